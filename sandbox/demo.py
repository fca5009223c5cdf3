"""`make demo`: the whole product on one machine, with no Docker and no root.

Starts Redis (the one at `REDIS_URL`, else a private one persisting under `var/redis`), the
WispHub and BQN simulators over HTTPS with seeded clients, and the Procfile's web, worker and
scheduler processes; once the start-up reconcile has filled the BQN it prints curl commands to
try. Ctrl-C stops it all (honcho runs the processes).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import requests
from honcho.manager import Manager

from sandbox.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"
PORT = os.environ.get("PORT", "8000")
WISPHUB_PORT, BQN_PORT, REDIS_PORT = 8081, 3443, 6380
CLIENTS = 500
API_KEY, BQN_USER, BQN_PASSWORD = "demo-key", "demo", "demo"
WEBHOOK_SECRET, API_TOKEN = "demo-webhook-secret", "demo-api-token-local"
WISPHUB_CA = VAR / "tls" / "wisphub" / "ca.pem"
BQN_CA = VAR / "tls" / "bqn" / "ca.pem"
READY_TIMEOUT_SECONDS = 120


def environment() -> dict[str, str]:
    """The settings every demo process shares."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PORT": PORT,
        "REDIS_URL": os.environ.get("REDIS_URL") or f"redis://127.0.0.1:{REDIS_PORT}/0",
        "WISPHUB_URL": f"https://127.0.0.1:{WISPHUB_PORT}",
        "WISPHUB_API_KEY": API_KEY,
        "WISPHUB_CA_BUNDLE": str(WISPHUB_CA),
        "BQN_URL": f"127.0.0.1:{BQN_PORT}",
        "BQN_USER": BQN_USER,
        "BQN_PASSWORD": BQN_PASSWORD,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "API_TOKEN": API_TOKEN,
        "POLL_INTERVAL": os.environ.get("POLL_INTERVAL", "10"),
    }


def processes() -> dict[str, str]:
    """Process name -> command: the simulators, the Procfile's processes, the guide."""
    python = sys.executable
    commands = {}
    commands["wisphub"] = (
        f"{python} -m sandbox wisphub --port {WISPHUB_PORT} --clients {CLIENTS} "
        f"--api-key {API_KEY} --tls-dir var/tls/wisphub --quiet"
    )
    commands["bqn"] = (
        f"{python} -m sandbox bqn --port {BQN_PORT} --user {BQN_USER} "
        f"--password {BQN_PASSWORD} --tls-dir var/tls/bqn --quiet"
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
    VAR.mkdir(exist_ok=True)
    redis = None
    if not os.environ.get("REDIS_URL"):
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
    env = environment()
    web = f"http://127.0.0.1:{PORT}"
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not _bqn_filled() or not _ready(web):
        if time.monotonic() > deadline:
            print("the demo did not come up; see the other processes' output above")
            return
        time.sleep(1)
    client = _an_active_client()
    wisphub = env["WISPHUB_URL"]
    ca = WISPHUB_CA.relative_to(ROOT)
    hook = f"-H 'X-Webhook-Token: {WEBHOOK_SECRET}'"
    api = f"-H 'Authorization: Bearer {API_TOKEN}'"
    json_type = "-H 'Content-Type: application/json'"
    print(
        f"""
================ wisphub-bqn-sync demo ================
Service {web}   WispHub simulator {wisphub}   BQN simulator https://127.0.0.1:{BQN_PORT}
The start-up reconcile has put the {CLIENTS} seeded clients on the (simulated) BQN.

1. Suspend client {client["id_servicio"]} ({client["ip"]}) in WispHub:
   curl -s --cacert {ca} -X PATCH {wisphub}/_sim/clients/{client["id_servicio"]} \\
        {json_type} -d '{{"estado": "Suspendido"}}'
2. Notify the service (the answer holds the job id):
   curl -s -X POST {web}/webhooks/wisphub {hook} {json_type} \\
        -d '{{"id_servicio": {client["id_servicio"]}}}'
3. Read the job:
   curl -s {web}/api/v1/jobs/JOB_ID {api}
4. See the BQN simulator's entry (now with policy Wisphub_block):
   curl -sk -u {BQN_USER}:{BQN_PASSWORD} \\
        https://127.0.0.1:{BQN_PORT}/api/v1/subscribers/{client["ip"]}
   and every step the service took for the client, newest first:
   curl -s {web}/api/v1/clients/{client["id_servicio"]}/history {api}
   The status page shows the same, with the queue, workers, failures and a chart:
   open {web}/?client={client["id_servicio"]} and sign in with the API token {API_TOKEN}
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
=======================================================""",
        flush=True,
    )
    while True:
        time.sleep(3600)


def _ready(web: str) -> bool:
    try:
        return requests.get(f"{web}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _bqn_filled() -> bool:
    try:
        state = requests.get(
            f"https://127.0.0.1:{BQN_PORT}/_sim/state",
            timeout=2,
            verify=str(BQN_CA),
        ).json()
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
