"""`wisphub-bqn-sync`: a one-shot full sync, command-line compatible with Bequant's original script.

    wisphub-bqn-sync [-w WISPHUB_HOST] -b BQN_IP BQN_USER BQN_PASSWORD API_KEY [-v|-vv]

Every argument may instead come from its environment variable, so that with all of them set
`wisphub-bqn-sync` alone runs the sync. Exit status: 0 all went well, 1 some operations failed,
the deletion guard held deletions back, or an API stayed unreachable, 2 usage or configuration
error, or a `--client` WispHub does not have (with a one-line reason).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import closing
from typing import Any, TextIO

from worker import handover, logs
from worker.clients.wisphub import WispHubClient
from worker.core.errors import ConfigError, SyncError
from worker.core.model import Operation
from worker.core.overrides import load_overrides
from worker.core.progress import Progress, TerminalProgress, silent
from worker.core.report import Report, merged, summary
from worker.settings import ServiceSettings, Settings, redacted
from worker.sync.engine import full_sync, no_such_client, read_plans, sync_client
from worker.sync.targets import (
    SelectedClients,
    Shaper,
    connected,
    each_target,
    mapped_per_selector,
    unless_all_failed,
)
from worker.targets import Target
from worker.version import add_version_option

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
# The original script's defaults, kept so that its command lines mean the same here.
ORIGINAL_DEFAULTS = {"WISPHUB_URL": "api.wisphub.net", "BQN_URL": "192.168.0.120"}


def build_parser() -> argparse.ArgumentParser:
    """The original script's arguments, plus the new options."""
    parser = argparse.ArgumentParser(
        prog="wisphub-bqn-sync",
        description=(
            "Synchronise WispHub clients with BQN subscribers and rate policies: one full "
            "pass, then exit. Arguments override the matching environment variables."
        ),
        epilog=(
            "Exit status: 0 all applied, 1 some operations failed, deletions were held back or "
            "an API was unreachable, 2 usage or configuration error, or no such --client in "
            "WispHub."
        ),
    )
    add_version_option(parser)
    parser.add_argument(
        "-w",
        dest="wisphub",
        metavar="WISPHUB_HOST",
        help="WispHub API host, host:port or URL (env WISPHUB_URL; default api.wisphub.net)",
    )
    parser.add_argument(
        "-b",
        dest="bqn",
        metavar="BQN_IP",
        help="BQN management IP, host:port or URL (env BQN_URL; default 192.168.0.120)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more detail on standard error (-v progress, -vv every request)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    parser.add_argument(
        "--show-config",
        action="store_true",
        help="print the settings in effect as JSON, secrets redacted, and exit",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--force",
        action="store_true",
        help="let through deletions the guard would hold back (MAX_DELETE_FRACTION)",
    )
    parser.add_argument(
        "--client",
        type=_positive_int,
        metavar="ID_SERVICIO",
        help="sync only this client (its current IP) instead of everyone",
    )
    parser.add_argument(
        "--target",
        metavar="NAME",
        help="sync only this target of BQN_TARGETS_FILE (default: every target)",
    )
    parser.add_argument(
        "--wait",
        type=_positive_int,
        default=3600,
        metavar="SECONDS",
        help="where the service runs (REDIS_URL or REDIS_SENTINELS set), wait this long for "
        "the run it is handed (default 3600)",
    )
    parser.add_argument("user", nargs="?", metavar="BQN_USER", help="env BQN_USER")
    parser.add_argument("password", nargs="?", metavar="BQN_PASSWORD", help="env BQN_PASSWORD")
    parser.add_argument("key", nargs="?", metavar="API_KEY", help="env WISPHUB_API_KEY")
    return parser


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Settings from the environment, with the command-line arguments laid over it. The
    original command line (`-b IP USER PASS`) syncs that one BQN, targets file or not; without
    it, a targets file takes the place of the original script's default BQN."""
    given = {k: v for k, v in env.items() if v.strip()}
    if args.bqn or args.user or args.password:
        given.pop("BQN_TARGETS_FILE", None)
    fallbacks = dict(ORIGINAL_DEFAULTS)
    if "BQN_TARGETS_FILE" in given:
        fallbacks.pop("BQN_URL")
    values = {**fallbacks, **given}
    overrides = {
        "WISPHUB_URL": args.wisphub,
        "BQN_URL": args.bqn,
        "BQN_USER": args.user,
        "BQN_PASSWORD": args.password,
        "WISPHUB_API_KEY": args.key,
    }
    values.update({name: value for name, value in overrides.items() if value})
    return Settings.from_env(values)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    environ = os.environ if env is None else env
    display = TerminalProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        configure_logging(args.verbose, environ, None if display is None else display.above())
        settings = settings_from(args, environ)
        if args.show_config:
            show_config(settings, environ)
            return EXIT_OK
        if service_runs(args, environ):
            return through_service(args, settings, environ)
        try:
            report, unreached = run(
                settings,
                client=args.client,
                dry_run=args.dry_run,
                force=args.force,
                target=args.target,
                progress=display or silent,
            )
        finally:
            if display is not None:
                display.close()
    except ConfigError as exc:
        print(f"wisphub-bqn-sync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SyncError as exc:
        print(f"wisphub-bqn-sync: sync failed, nothing more was changed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    show(report.to_dict(), args.json)
    for name, error in unreached.items():
        print(
            f"wisphub-bqn-sync: target {name} failed, nothing more was changed there: {error}",
            file=sys.stderr,
        )
    return EXIT_OK if report.ok and not unreached else EXIT_FAILED


def service_runs(args: argparse.Namespace, env: Mapping[str, str]) -> bool:
    """Whether the run goes through the service (its Redis is named): every run that writes,
    and a full pass's dry run (the service's plan, with its overrides); a client's dry run
    writes nothing and is worked out here."""
    named = env.get("REDIS_URL", "").strip() or env.get("REDIS_SENTINELS", "").strip()
    return bool(named) and not (args.dry_run and args.client is not None)


def through_service(args: argparse.Namespace, settings: Settings, env: Mapping[str, str]) -> int:
    """Hand the run to the service (`worker.handover`), wait for it, and print its report;
    returns the exit status. The command line may name only the systems the service's
    environment names: another BQN or WispHub is synced without the service."""
    if settings != settings_from(build_parser().parse_args([]), env):
        raise ConfigError(
            "the command line names a WispHub or BQN other than this environment's, whose "
            "service (REDIS_URL or REDIS_SENTINELS) syncs them: drop those arguments to sync "
            "through the service, or unset REDIS_URL and REDIS_SENTINELS to sync the others "
            "without it"
        )
    chosen(settings, args.target)  # a wrong --target is refused before anything is queued
    view = handover.hand_over(
        ServiceSettings.from_env(env),
        client=args.client,
        dry_run=args.dry_run,
        force=args.force,
        target=args.target,
        wait=args.wait,
        say=lambda text: print(f"wisphub-bqn-sync: {text}", file=sys.stderr),
    )
    job, status, report = view["job_id"], view["status"], view.get("report")
    if status not in handover.ENDED:
        print(
            f"wisphub-bqn-sync: job {job} is still {status} in the service after {args.wait:g} "
            f"s; follow it with GET /api/v1/jobs/{job}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if isinstance(report, dict) and "counts" in report:
        show(report, args.json)
    elif isinstance(report, dict) and "skipped" in report:
        print(f"wisphub-bqn-sync: skipped: {report['skipped']}", file=sys.stderr)
    if status != "finished":
        print(f"wisphub-bqn-sync: job {job} {status}: {view.get('error', '')}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if report.get("ok", True) and not report.get("unreached") else EXIT_FAILED


def show(report: Mapping[str, Any], as_json: bool) -> None:
    """A report on standard output: as JSON, or in lines for people."""
    if as_json:
        json.dump(report, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(report, sys.stdout)


def show_config(settings: Settings, env: Mapping[str, str]) -> None:
    """The engine's and the service's settings as JSON on standard output, secrets redacted.
    The one-shot sync needs no Redis: without a valid service configuration (`REDIS_URL`
    unset, say) its part says why instead."""
    try:
        service: dict[str, object] = redacted(ServiceSettings.from_env(env))
    except ConfigError as exc:
        service = {"error": str(exc)}
    config = {"sync": redacted(settings), "service": service}
    json.dump(config, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def run(
    settings: Settings,
    *,
    client: int | None,
    dry_run: bool,
    force: bool = False,
    target: str | None = None,
    progress: Progress = silent,
) -> tuple[Report, dict[str, SyncError]]:
    """One full sync (or one client's) on every target, or on `target` alone, with fresh API
    clients: WispHub is read once, the targets are written at once. Returns the report of all
    (each operation naming its target when there are several) and the targets that failed;
    when every target failed, the first error is raised. A `client` WispHub does not have, of
    which no BQN holds anything to remove, is a `ConfigError` (a wrong id, as a wrong
    `--target` is)."""
    overrides = load_overrides(settings.plan_speeds_file)
    wisphub = WispHubClient(settings.wisphub)
    with closing(wisphub), connected(chosen(settings, target)) as shapers:
        plans = read_plans(wisphub, overrides)
        if client is not None:
            rows = {client: wisphub.get_client(client)}

            def work(shaper: Shaper) -> Report:
                view = SelectedClients(wisphub, shaper.selector, rows=rows)
                found = sync_client(
                    client, view, shaper.bqn, settings.rules, lambda _: plans, dry_run=dry_run
                )
                return found.report
        else:
            complete_pass = wisphub.list_clients(progress)
            mapped = mapped_per_selector(
                complete_pass, [shaper.selector for shaper in shapers], settings.rules, plans
            )

            def work(shaper: Shaper) -> Report:
                outcome = full_sync(
                    mapped[shaper.selector],
                    SelectedClients(wisphub, shaper.selector),
                    shaper.bqn,
                    rules=settings.rules,
                    guard=settings.guard,
                    force=force,
                    dry_run=dry_run,
                    progress=progress,
                )
                return outcome.report

        reports, errors = unless_all_failed(*each_target(shapers, work))
    if client is not None and not errors and no_such_client(rows[client], reports.values()):
        raise ConfigError(f"--client: WispHub has no client {client}; nothing was changed")
    clients = 1 if client is not None else len(complete_pass)
    return merged(reports, clients=clients), errors


def chosen(settings: Settings, target: str | None) -> list[Target]:
    """The targets a run works on: every one, or the one named."""
    if target is None:
        return list(settings.targets)
    found = [t for t in settings.targets if t.name == target]
    if not found:
        names = ", ".join(t.name for t in settings.targets)
        raise ConfigError(f"--target: no target named {target!r} (targets: {names})")
    return found


def print_report(report: Mapping[str, Any], out: TextIO) -> None:
    """The plan (on dry runs), every skip, conflict and failure, then the summary line, from
    a report's dict form (`Report.to_dict`: of a run here, or of a job the service ran)."""
    for op in report.get("operations", ()):
        print(f"plan: {Operation.from_dict(op).describe()}", file=out)
    for skip in report["skipped"]:
        print(
            f"skipped: client {skip['id_servicio']} ip {skip['ip']!r}: {skip['reason']}",
            file=out,
        )
    for conflict in report["conflicts"]:
        losers = ", ".join(map(str, conflict["losers"]))
        print(
            f"conflict: {conflict['ip']} claimed by clients {conflict['winner']} (kept) and "
            f"{losers}",
            file=out,
        )
    for plan in report["plans_without_speeds"]:
        print(
            f"plan without speeds: {plan['plan']} ({plan['reason']}); policy {plan['policy']} "
            "is left for the operator (or PLAN_SPEEDS_FILE)",
            file=out,
        )
    if report["unused_policies"]:
        print(f"unused policies (kept): {', '.join(report['unused_policies'])}", file=out)
    for note in report["notes"]:
        print(f"note: {note}", file=out)
    for failure in report["failures"]:
        print(f"failed: {Operation.from_dict(failure).describe()}: {failure['error']}", file=out)
    if report["guard"]:
        print(f"GUARD: {report['guard']}", file=out)
    print(summary(report), file=out)


def configure_logging(verbosity: int, env: Mapping[str, str], stream: TextIO | None = None) -> None:
    """Warnings by default, `-v` info, `-vv` debug (every request), on `stream` (standard
    error; on a terminal, above the progress line), as text or as JSON (`LOG_FORMAT`)."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    logs.configure(level, logs.format_from(env), stream)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
