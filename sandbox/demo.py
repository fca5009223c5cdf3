"""`make demo`: both simulators over HTTPS, and the CLI run against them as the original script is.

Shows a cold sync of 2,000 seeded clients, a second run that writes nothing, and a suspension
in WispHub reaching the BQN (first as a dry-run plan, then applied).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from sandbox import bqn, seed, wisphub
from sandbox.server import RunningServer, serve
from sandbox.tls import make_tls

CLIENTS = 2000
API_KEY = "demo-key"
USER = PASSWORD = "demo"


def main() -> int:
    """Run the demo; returns the exit status of the last sync."""
    tls = make_tls(Path("var/tls"))
    wisphub_state = wisphub.WispHubState(api_key=API_KEY)
    seed.load_wisphub(wisphub_state, CLIENTS)
    bqn_state = bqn.BqnState(user=USER, password=PASSWORD)
    seed.load_bqn(bqn_state)
    with (
        serve(wisphub.create_app(wisphub_state), tls=tls) as wisphub_server,
        serve(bqn.create_app(bqn_state), tls=tls) as bqn_server,
    ):
        print(f"WispHub simulator: {wisphub_server.url} ({CLIENTS} clients)")
        print(f"BQN simulator:     {bqn_server.url}/api/v1")
        env = {**os.environ, "WISPHUB_CA_BUNDLE": str(tls.ca)}
        command = [
            str(Path(sys.executable).with_name("wisphub-bqn-sync")),
            "-w",
            host_port(wisphub_server),
            "-b",
            host_port(bqn_server),
            USER,
            PASSWORD,
            API_KEY,
        ]
        step("1. Cold sync: an empty BQN gets every client", command, env)
        step("2. Second run: nothing changed, so nothing is written", command, env)
        client = next(row for row in wisphub_state.clients.values() if row["estado"] == "Activo")
        wisphub_state.update_client(client["id_servicio"], estado="Suspendido")
        print(f"\nClient {client['id_servicio']} ({client['ip']}) is suspended in WispHub.")
        step("3. Dry run: the plan, nothing written", [*command, "--dry-run"], env)
        code = step("4. Applied: the client is blocked on the BQN", command, env)
        held = bqn_state.subscribers[client["ip"]]
        print(f"\nBQN now holds {client['ip']} with policy {held['policyRate']}.")
    return code


def host_port(server: RunningServer) -> str:
    """`127.0.0.1:PORT`, the form an operator passes to -w and -b."""
    return server.url.split("://", 1)[1]


def step(title: str, command: list[str], env: dict[str, str]) -> int:
    """Print a title and the command, run it, show the tail of its output."""
    shown = [Path(command[0]).name, *command[1:]]
    print(f"\n== {title}\n$ WISPHUB_CA_BUNDLE=var/tls/ca.pem {shlex.join(shown)}")
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = result.stdout.splitlines()
    for line in lines[:3]:
        print(f"  {line}")
    if len(lines) > 4:
        print(f"  ... ({len(lines) - 4} more lines)")
    if len(lines) > 3:
        print(f"  {lines[-1]}")
    if result.stderr:
        print(result.stderr, file=sys.stderr, end="")
    print(f"  (exit status {result.returncode})")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
