"""`make demo`: the whole product on one machine, with no Docker and no root.

Starts Redis (the one at `REDIS_URL`, else a private one persisting under `var/redis`), the
WispHub and BQN simulators over HTTPS with seeded clients, and the Procfile's web, worker and
scheduler processes; once the start-up reconcile has filled the BQN it prints curl commands to
try. Ctrl-C stops it all (honcho runs the processes).

`DEMO_BQNS=2` starts a second BQN simulator and names the two in a targets file
(`BQN_TARGETS_FILE`) as an HA pair, so the service keeps both in step.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml
from honcho.manager import Manager

from sandbox.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"
PORT = os.environ.get("PORT", "8000")
WISPHUB_PORT, REDIS_PORT = 8081, 6380
CLIENTS = 500
API_KEY, BQN_USER = "demo-key", "demo"
WEBHOOK_SECRET, API_TOKEN = "demo-webhook-secret", "demo-api-token-local"
WISPHUB_CA = VAR / "tls" / "wisphub" / "ca.pem"
TARGETS_FILE = VAR / "bqn-targets.yaml"
# How the service is told its BQNs: the demo sets one way and drops the other, since the service
# refuses both (and the shell running `make demo` may hold either).
BQN_VARIABLES = ("BQN_URL", "BQN_USER", "BQN_PASSWORD", "BQN_TARGETS_FILE")
READY_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Bqn:
    """One BQN simulator: its target name, honcho process name (also its TLS directory under
    var/tls), port and REST password."""

    name: str
    process: str
    port: int
    password: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def tls_dir(self) -> str:
        return f"var/tls/{self.process}"

    @property
    def ca(self) -> Path:
        return ROOT / self.tls_dir / "ca.pem"

    @property
    def password_env(self) -> str:
        """The variable the targets file reads its password from, as production should."""
        return f"BQN_{self.name.upper().replace('-', '_')}_PASSWORD"


# The first alone by default; both with DEMO_BQNS=2.
BQNS = (Bqn("core-a", "bqn", 3443, "demo"), Bqn("core-b", "bqn-b", 3444, "demo-b"))


def bqns() -> tuple[Bqn, ...]:
    """The BQN simulators `DEMO_BQNS` asks for: 1 (the default) or 2."""
    count = os.environ.get("DEMO_BQNS", "").strip() or "1"
    if count not in ("1", "2"):
        raise SystemExit(
            f"DEMO_BQNS must be 1 (one BQN) or 2 (two BQNs kept in step), not {count!r}"
        )
    return BQNS[: int(count)]


def environment() -> dict[str, str]:
    """The settings every demo process shares."""
    inherited = {name: value for name, value in os.environ.items() if name not in BQN_VARIABLES}
    return {
        **inherited,
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PORT": PORT,
        **_redis_settings(),
        "WISPHUB_URL": f"https://127.0.0.1:{WISPHUB_PORT}",
        "WISPHUB_API_KEY": API_KEY,
        "WISPHUB_CA_BUNDLE": str(WISPHUB_CA),
        **_bqn_settings(bqns()),
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "API_TOKEN": API_TOKEN,
        "POLL_INTERVAL": os.environ.get("POLL_INTERVAL", "10"),
    }


def _redis_settings() -> dict[str, str]:
    """`REDIS_URL`: the one given, else the demo's own Redis; none on Sentinel (`make demo-ha`
    sets `REDIS_SENTINELS`, which the processes inherit)."""
    if os.environ.get("REDIS_SENTINELS"):
        return {}
    return {"REDIS_URL": os.environ.get("REDIS_URL") or f"redis://127.0.0.1:{REDIS_PORT}/0"}


def _bqn_settings(simulated: Sequence[Bqn]) -> dict[str, str]:
    """One BQN by `BQN_URL`; several by the targets file and their password variables."""
    if len(simulated) == 1:
        [bqn] = simulated
        return {
            "BQN_URL": f"127.0.0.1:{bqn.port}",
            "BQN_USER": BQN_USER,
            "BQN_PASSWORD": bqn.password,
        }
    return {
        "BQN_TARGETS_FILE": str(TARGETS_FILE),
        **{bqn.password_env: bqn.password for bqn in simulated},
    }


def write_targets(simulated: Sequence[Bqn]) -> None:
    """The targets file naming the BQN simulators, without selectors: an HA pair, each taking
    every client. No ca_bundle: the simulators write their CA only once started, after the
    service has read the file (the one-BQN demo does not verify the BQN either)."""
    entries = [
        {
            "name": bqn.name,
            "url": f"{bqn.url}/api/v1",
            "user": BQN_USER,
            "password_env": bqn.password_env,
        }
        for bqn in simulated
    ]
    TARGETS_FILE.write_text(
        "# Written by `make demo` (sandbox/demo.py) at each start.\n"
        + yaml.safe_dump({"targets": entries}, sort_keys=False)
    )


def processes() -> dict[str, str]:
    """Process name -> command: the simulators, the Procfile's processes, the guide."""
    python = sys.executable
    commands = {}
    commands["wisphub"] = (
        f"{python} -m sandbox wisphub --port {WISPHUB_PORT} --clients {CLIENTS} "
        f"--api-key {API_KEY} --tls-dir var/tls/wisphub --quiet"
    )
    for bqn in bqns():
        commands[bqn.process] = (
            f"{python} -m sandbox bqn --port {bqn.port} --user {BQN_USER} "
            f"--password {bqn.password} --tls-dir {bqn.tls_dir} --quiet"
        )
    commands.update(procfile())
    commands["guide"] = f"{python} -m sandbox.demo guide"
    return commands


def procfile() -> dict[str, str]:
    """The Procfile's commands by process name."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = (line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))
    return dict(entries)


def run() -> int:
    """Start Redis if needed, then everything else under honcho, until Ctrl-C."""
    simulated = bqns()
    VAR.mkdir(exist_ok=True)
    if len(simulated) > 1:
        write_targets(simulated)
    redis = None
    if not os.environ.get("REDIS_URL") and not os.environ.get("REDIS_SENTINELS"):
        redis = RedisServer(VAR / "redis", REDIS_PORT, persistent=True)
        print(f"Redis (append-only, files in var/redis) on {redis.url}", flush=True)
    manager = Manager()
    env = environment()
    for name, command in processes().items():
        manager.add_process(name, command, env=env, cwd=str(ROOT))
    try:
        manager.loop()
    finally:
        if redis is not None:
            redis.stop()
    return manager.returncode or 0


def guide() -> None:
    """Wait for the service and the start-up reconcile, print what to try, then idle."""
    simulated = bqns()
    web = f"http://127.0.0.1:{PORT}"
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not all(_bqn_filled(bqn) for bqn in simulated) or not _ready(web):
        if time.monotonic() > deadline:
            print("the demo did not come up; see the other processes' output above")
            return
        time.sleep(1)
    print(guide_text(_an_active_client(), simulated), flush=True)
    while True:
        time.sleep(3600)


def guide_text(client: dict, simulated: Sequence[Bqn]) -> str:
    """The curl commands to try on `client`, an active one, with the demo's BQNs."""
    env = environment()
    web = f"http://127.0.0.1:{PORT}"
    wisphub = env["WISPHUB_URL"]
    ca = WISPHUB_CA.relative_to(ROOT)
    hook = f"-H 'X-Webhook-Token: {WEBHOOK_SECRET}'"
    api = f"-H 'Authorization: Bearer {API_TOKEN}'"
    json_type = "-H 'Content-Type: application/json'"
    entries = "".join(
        f"\n   curl -sk -u {BQN_USER}:{bqn.password} \\"
        f"\n        {bqn.url}/api/v1/subscribers/{client['ip']}"
        for bqn in simulated
    )
    if len(simulated) == 1:
        where = f"   BQN simulator {simulated[0].url}"
        bqn_noun = "BQN"
        entry = "See the BQN simulator's entry (now with policy Wisphub_block):"
    else:
        listed = ", ".join(f"{bqn.name} {bqn.url}" for bqn in simulated)
        where = f"\nBQN simulators {listed} (the targets of {TARGETS_FILE.relative_to(ROOT)})"
        bqn_noun = "BQNs"
        entries += (
            "\n   the BQNs the service keeps in step, an HA pair taking every client:"
            f"\n   curl -s {web}/api/v1/targets {api}"
        )
        entry = "See the client's entry on each BQN simulator (now with policy Wisphub_block):"
    return f"""
================ wisphub-bqn-sync demo ================
Service {web}   WispHub simulator {wisphub}{where}
The start-up reconcile has put the {CLIENTS} seeded clients on the (simulated) {bqn_noun}.

1. Suspend client {client["id_servicio"]} ({client["ip"]}) in WispHub:
   curl -s --cacert {ca} -X PATCH {wisphub}/_sim/clients/{client["id_servicio"]} \\
        {json_type} -d '{{"estado": "Suspendido"}}'
2. Notify the service (the answer holds the job id):
   curl -s -X POST {web}/webhooks/wisphub {hook} {json_type} \\
        -d '{{"id_servicio": {client["id_servicio"]}}}'
3. Read the job:
   curl -s {web}/api/v1/jobs/JOB_ID {api}
4. {entry}{entries}
   and every step the service took for the client, newest first:
   curl -s {web}/api/v1/clients/{client["id_servicio"]}/history {api}
   The client's page shows the same, with WispHub beside the BQN (or type its name in the
   status page's search box): open {web}/clients/{client["id_servicio"]} and sign in with the
   API token {API_TOKEN}
5. Reactivate it without notifying: the poller applies it within {env["POLL_INTERVAL"]} s:
   curl -s --cacert {ca} -X PATCH {wisphub}/_sim/clients/{client["id_servicio"]} \\
        {json_type} -d '{{"estado": "Activo"}}'
6. What a sync of the client would change, and a full reconcile:
   curl -s {web}/api/v1/clients/{client["id_servicio"]}/plan {api}
   curl -s -X POST {web}/api/v1/reconcile {api} {json_type} -d '{{"dry_run": false}}'
   curl -s {web}/api/v1/reconciles {api}
7. Prometheus metrics:
   curl -s {web}/metrics {api}

Ctrl-C stops everything.
======================================================="""


def _ready(web: str) -> bool:
    try:
        return requests.get(f"{web}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _bqn_filled(bqn: Bqn) -> bool:
    try:
        state = requests.get(f"{bqn.url}/_sim/state", timeout=2, verify=str(bqn.ca)).json()
    except OSError:  # not up yet, or its CA file not written yet (requests' errors are OSErrors)
        return False
    return sum(s.get("policyAssignedBy") == "rest" for s in state["subscribers"]) > CLIENTS // 2


def _an_active_client() -> dict:
    response = requests.get(
        f"https://127.0.0.1:{WISPHUB_PORT}/api/clientes/",
        params={"estado": 1, "limit": 1},
        headers={"Authorization": f"Api-Key {API_KEY}"},
        verify=str(WISPHUB_CA),
        timeout=5,
    )
    return response.json()["results"][0]


def main() -> int:
    """`python -m sandbox.demo` runs the demo; `python -m sandbox.demo guide` is its guide."""
    if sys.argv[1:] == ["guide"]:
        guide()
        return 0
    return run()


if __name__ == "__main__":
    sys.exit(main())
