"""Command line: `python -m sandbox {wisphub,bqn} [options]` (console script
`wisphub-bqn-sandbox`) serves one simulator with seeded data until Ctrl-C.

`pip install wisphub-bqn-sync` installs the command without what it serves with (the
`sandbox` extra): it then says what to install and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from flask import Flask

from sandbox import bqn, seed, wisphub
from worker.version import add_version_option

log = logging.getLogger("sandbox")

PROG = "wisphub-bqn-sandbox"
EXIT_MISSING = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, build the seeded simulator and serve it."""
    args = _parser().parse_args(argv)
    try:  # the modules that need the sandbox extra (cheroot, trustme)
        from sandbox.server import serve_forever  # noqa: PLC0415
        from sandbox.tls import make_tls  # noqa: PLC0415
    except ImportError as exc:
        print(
            f"{PROG}: {exc.name} is missing: the simulators need the sandbox extra, "
            "pip install 'wisphub-bqn-sync[sandbox]'",
            file=sys.stderr,
        )
        return EXIT_MISSING
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.quiet:
        logging.getLogger("sandbox.http").setLevel(logging.WARNING)
    app, summary = _build(args)
    tls = make_tls(args.tls_dir) if args.tls_dir else None
    log.info("%s; control endpoints under /_sim/", summary)
    if tls is not None:
        log.info("TLS CA certificate for clients to verify with: %s", tls.ca)
    serve_forever(app, args.host, args.port, tls)
    return 0


def _build(args: argparse.Namespace) -> tuple[Flask, str]:
    if args.api == "wisphub":
        state = wisphub.WispHubState(api_key=args.api_key, max_limit=args.max_limit)
        seed.load_wisphub(state, args.clients, args.seed)
        summary = (
            f"WispHub simulator: {len(state.clients)} clients, {len(state.plans)} plans"
            f" (seed {args.seed}), API under /api/"
        )
        return wisphub.create_app(state), summary
    state = bqn.BqnState(user=args.user, password=args.password)
    seed.load_bqn(state, args.seed)
    summary = (
        f"BQN simulator: {len(state.subscribers)} rules subscribers,"
        f" {len(state.static_policies)} static policies (seed {args.seed}), API under {bqn.API}"
    )
    return bqn.create_app(state), summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve a WispHub or BQN API simulator with seeded demo data."
    )
    add_version_option(parser)
    apis = parser.add_subparsers(dest="api", required=True, metavar="{wisphub,bqn}")
    wisphub_args = apis.add_parser("wisphub", help="WispHub billing API simulator")
    _common(wisphub_args, port=8081)
    wisphub_args.add_argument("--clients", type=int, default=2000, help="seeded clients")
    wisphub_args.add_argument("--api-key", default="demo-key", help="accepted Api-Key")
    wisphub_args.add_argument(
        "--max-limit", type=int, default=1000, help="server-side cap on ?limit="
    )
    bqn_args = apis.add_parser("bqn", help="Bequant BQN REST API simulator")
    _common(bqn_args, port=3443)
    bqn_args.add_argument("--user", default="demo", help="REST user (HTTP Basic)")
    bqn_args.add_argument("--password", default="demo", help="REST password (HTTP Basic)")
    return parser


def _common(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    parser.add_argument("--seed", type=int, default=1, help="seed for the demo data")
    parser.add_argument("--quiet", action="store_true", help="do not log every request")
    parser.add_argument(
        "--tls-dir",
        help="serve HTTPS with a throw-away CA and certificate written to this directory",
    )


if __name__ == "__main__":
    sys.exit(main())
