"""The baseline: what the original script does, on the same data. It reads every WispHub
client, reads the BQN's subscribers once, then writes each subscriber that differs, one
request at a time, each on a new connection (no session, no keep-alive).

Run by `bench.reconcile` as `python -m bench.baseline` with the sync's environment variables;
prints `{"writes": N}`.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

import requests

BLOCK = "Wisphub_block"


def main() -> None:
    env = os.environ
    wisphub, ca = env["WISPHUB_URL"], env["WISPHUB_CA_BUNDLE"]
    headers = {"Authorization": f"Api-Key {env['WISPHUB_API_KEY']}"}
    bqn, auth = env["BQN_URL"], (env["BQN_USER"], env["BQN_PASSWORD"])
    rows: list[dict[str, Any]] = []
    while True:
        page = requests.get(
            f"{wisphub}/api/clientes/",
            params={"limit": 1000, "offset": len(rows)},
            headers=headers,
            verify=ca,
            timeout=60,
        ).json()
        rows += page["results"]
        if not page["results"] or len(rows) >= page["count"]:
            break
    held = requests.get(f"{bqn}/api/v1/subscribers", auth=auth, verify=False, timeout=60).json()
    current = {s["subscriberIp"]: s for s in held["items"] if "subscriberIp" in s}
    block = {"policyName": BLOCK, "rateLimitDownlink": {"rate": 0}, "rateLimitUplink": {"rate": 0}}
    requests.post(
        f"{bqn}/api/v1/policies/rate/{BLOCK}", json=block, auth=auth, verify=False, timeout=60
    )
    writes = 1
    for row in rows:
        wanted = _subscriber(row)
        if wanted is None:
            continue
        have = current.get(wanted["subscriberIp"], {})
        if all(have.get(key) == value for key, value in wanted.items()):
            continue
        requests.post(
            f"{bqn}/api/v1/subscribers/{wanted['subscriberIp']}",
            json=wanted,
            auth=auth,
            verify=False,
            timeout=60,
        )
        writes += 1
    print(json.dumps({"writes": writes}))


def _subscriber(row: dict[str, Any]) -> dict[str, str] | None:
    """The original script's mapping: `nombre`, plan name with `_`, or the block policy."""
    if row.get("estado") == "Cancelado" or not row.get("plan_internet"):
        return None
    try:
        ip = str(ipaddress.IPv4Address(str(row.get("ip", "")).strip()))
    except ValueError:
        return None
    if row["estado"] == "Suspendido":
        policy = BLOCK
    else:
        policy = row["plan_internet"]["nombre"].replace(" ", "_")
    return {"subscriberIp": ip, "subscriberId": row["nombre"], "policyRate": policy}


if __name__ == "__main__":
    import urllib3

    urllib3.disable_warnings()
    main()
