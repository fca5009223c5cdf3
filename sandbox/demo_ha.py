"""`make demo-ha`: `make demo` on a replicated Redis watched by Redis Sentinel: a master, a
replica and three sentinels on this machine (`sandbox.sentinel`, files under `var/redis-ha`),
the web, worker and scheduler processes on Sentinel (`REDIS_SENTINELS`). Kill the master and
watch the service carry on against the replica it promotes (docs/high-availability.md).
"""

from __future__ import annotations

import os
import sys

from sandbox import demo
from sandbox.sentinel import MASTER_NAME, RedisHA


def main() -> int:
    with RedisHA(demo.VAR / "redis-ha", persistent=True) as ha:
        os.environ.update(ha.env)
        master = ha.master()
        print(
            f"Redis master on port {master.port} (pid {master.process.pid}), replica on port "
            f"{ha.replica().port}, sentinels on {os.environ['REDIS_SENTINELS']} watching "
            f"'{MASTER_NAME}'.\n"
            f"Kill the master once the demo is up:  kill -9 {master.process.pid}\n"
            f"then see the new one and the degraded replication:\n"
            f"   curl -s -H 'Authorization: Bearer {demo.API_TOKEN}' "
            f"http://127.0.0.1:{demo.PORT}/readyz",
            flush=True,
        )
        return demo.run()


if __name__ == "__main__":
    sys.exit(main())
