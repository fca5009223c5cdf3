"""`wisphub-bqn-sync-scheduler`: queues the change poller every `POLL_INTERVAL` seconds, the plan
refresh every `PLAN_REFRESH_INTERVAL` seconds and the full reconcile at `RECONCILE_CRON` (local
time, as set by `TZ`), using RQ's cron scheduler.

While writes are paused (`worker.queue.pause`) the poll and the plan refresh let their turns
pass; the reconcile is queued, and waits.

Exactly one scheduler is active: each one must hold a lock in Redis, renewed at every beat, so
a second process started by mistake (or as a standby) waits and takes over only when the first
one is gone.

    wisphub-bqn-sync-scheduler [--help] [--version]

Every setting comes from the environment; `REDIS_URL` (or `REDIS_SENTINELS`) must be set.
Exit status 2: a configuration error, with its one-line reason (the systemd unit does not
restart on it).

Through a Redis failover the active scheduler carries on (`LeaderCronScheduler.start`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.lock import Lock
from rq.cron import CronJob, CronScheduler
from rq.utils import import_attribute, now

from worker import defaults, logs
from worker.core.errors import ConfigError
from worker.queue import connection, liveness, pause, queueing, startup, store
from worker.settings import ServiceSettings, Settings
from worker.version import add_version_option

log = logging.getLogger(__name__)

PROG = "wisphub-bqn-sync-scheduler"
# RQ's line for each poll it queues (every POLL_INTERVAL), which `ROUTINE` makes DEBUG: the
# poll says at INFO when it found something.
POLL_QUEUED = f"Enqueued job {queueing.POLL_CHANGES.path.rpartition('.')[2]} to queue "
ROUTINE = logs.Demoted(lambda record: record.getMessage().startswith(POLL_QUEUED))


class RestartedCronJob(CronJob):
    """RQ's cron job, queued with RQ's retries as the API queues the same jobs
    (`queueing.RESTARTS`): RQ's own takes no `retry`, and a job whose worker dies must run
    again (the nightly reconcile within a minute, not the next night; a poll, to give back the
    poll lock its dead run holds)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job_options["retry"] = queueing.RESTARTS

    def to_dict(self) -> dict[str, Any]:
        """RQ's description of the job for its monitoring, kept in Redis as JSON: without the
        retry, which JSON cannot hold."""
        described = super().to_dict()
        del described["retry"]
        return described


class LeaderCronScheduler(CronScheduler):
    """RQ's cron scheduler that runs only while it holds the leader lock."""

    def __init__(self, connection: Redis, leader: Lock, settings: ServiceSettings) -> None:
        super().__init__(connection=connection)
        self.leader = leader
        self.settings = settings
        logging.getLogger("rq.cron").addFilter(ROUTINE)  # once: then it is there

    def start(self) -> None:
        """Wait to become the leader, queue the start-up reconcile, then run the cron loop;
        through a Redis failover (the connection lost a while), lead again once Redis is back,
        the jobs' next turns kept."""
        if not self._take_lead():  # Redis unreachable at the start: exit 1, to be restarted
            self._lead_again()  # a standby waits through failovers too
        log.info("scheduler %s is active", self.name)
        if self.settings.reconcile_on_start:
            queue = queueing.make_queue(self.connection, self.settings.queue_name)
            job_id = queueing.enqueue_reconcile(queue, dry_run=False)
            log.info("queued the start-up reconcile as job %s", job_id)
        try:
            while True:
                try:
                    self._keep_schedule()
                    # the lock lives while this scheduler does, between RQ's heartbeats (up to
                    # a minute apart): a standby takes over within SCHEDULER_LEADER_SECONDS
                    with liveness.kept_alive(self.leader):
                        super().start()
                    return
                except (RedisConnectionError, RedisTimeoutError, LockError) as exc:
                    log.warning("scheduler lost Redis or its lock (%s); it leads again", exc)
                    self._lead_again()
        finally:
            try:
                self.leader.release()
            except LockError:
                log.debug("leader lock had already expired")

    def _take_lead(self) -> bool:
        """Take the leader lock if it is free, under this scheduler's name (`host:pid:…`): the
        lock's value says which process leads."""
        return bool(self.leader.acquire(blocking=False, token=self.name))

    def _lead_again(self) -> None:
        """Hold the leader lock again: its token, when the new master has it (replicated
        before the failover), else a free lock; while another scheduler holds it, stand by."""
        while True:
            try:
                try:
                    self.leader.reacquire()
                    return
                except LockError:
                    if self._take_lead():
                        return
                    log.info("another scheduler is active; standing by")
                    time.sleep(defaults.SCHEDULER_STANDBY_RETRY_SECONDS)
            except (RedisConnectionError, RedisTimeoutError):
                time.sleep(defaults.REDIS_RECONNECT_SECONDS)

    def _keep_schedule(self) -> None:
        """Move each cron job's next turn past the last time any scheduler queued it (RQ's
        history of the job, in Redis): a standby's turns date from its own start, so one that
        takes the lead would queue at once the nightly reconcile its predecessor queued that
        night already. A turn nobody queued (it came while no scheduler led) is still queued
        at once."""
        for job in self._cron_jobs:
            newest = self.connection.zrange(job.job_history_key, -1, -1, withscores=True)
            if not (job.cron and newest):
                continue
            queued_at = datetime.fromtimestamp(newest[0][1], UTC)
            if job.next_enqueue_time is not None and job.next_enqueue_time <= queued_at:
                job.set_enqueue_time(queued_at)

    def enqueue_jobs(self) -> list[CronJob]:
        """RQ's, but while writes are paused (`worker.queue.pause`) the poller and the plan
        refresh let their turns pass instead of piling up in the queue, where nothing runs
        them: the first poll after the pause finds every change made during it. The nightly
        reconcile is queued, and runs once writes resume."""
        if pause.paused(self.connection) is not None:
            moment = now()
            for job in self._cron_jobs:
                if job.interval and job.should_run():
                    job.set_enqueue_time(moment)
        return super().enqueue_jobs()

    def register(self, func: Callable[..., Any], queue_name: str, **options: Any) -> CronJob:
        """RQ's `register`, the job queued with RQ's retries (`RestartedCronJob`)."""
        job = RestartedCronJob(queue_name=queue_name, func=func, **options)
        self._cron_jobs.append(job)
        return job

    def heartbeat(self) -> None:
        """RQ's heartbeat, plus renewing the leader lock. A lost one (expired while Redis
        failed over, or another scheduler's now) raises `LockError`: `start` then takes it
        back if it is free, or stands by; stopping would leave no scheduler (systemd does not
        restart one that ends well)."""
        super().heartbeat()
        self.leader.reacquire()


def build(settings: ServiceSettings, redis: Redis) -> LeaderCronScheduler:
    """A scheduler with the reconcile, plan refresh and poll jobs registered, each with the
    options the API queues it with (`queueing.JobKind`)."""
    leader = store.singleton_lock(redis, "scheduler", defaults.SCHEDULER_LEADER_SECONDS)
    scheduler = LeaderCronScheduler(redis, leader, settings)
    scheduler.register(
        _function(queueing.RECONCILE),
        queue_name=settings.queue_name,
        cron=settings.reconcile_cron,
        kwargs={"dry_run": False},
        **queueing.RECONCILE.options(),
    )
    every = [
        (queueing.SYNC_PLANS, settings.plan_refresh_interval),
        (queueing.POLL_CHANGES, settings.poll_interval),
    ]
    for kind, interval in every:
        if interval:
            scheduler.register(
                _function(kind),
                queue_name=settings.queue_name,
                interval=interval,
                **kind.options(),
            )
    return scheduler


def _function(kind: queueing.JobKind) -> Callable[..., Any]:
    """The job function at the path RQ stores (RQ's cron scheduler wants the function; it
    queues it under that same path)."""
    return import_attribute(kind.path)


def build_parser() -> argparse.ArgumentParser:
    """No options besides `--help` and `--version`: those answer without touching Redis."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Queue the change poller, the plan refresh and the nightly full reconcile of "
            "wisphub-bqn-sync, until stopped (SIGTERM). Settings come from the environment: "
            "REDIS_URL, POLL_INTERVAL, PLAN_REFRESH_INTERVAL, RECONCILE_CRON, TZ "
            "(docs/configuration.md)."
        ),
        epilog="Exit status: 0 stopped, 2 configuration error (one line says which setting).",
    )
    add_version_option(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scheduler until SIGTERM/SIGINT."""
    build_parser().parse_args(argv)
    settings, redis = startup.connect(PROG)
    startup.announce("scheduler", redis, _api_settings(os.environ))
    log.info(
        "polling every %s; full reconcile at '%s' (%s)",
        f"{settings.poll_interval} s" if settings.poll_interval else "never (POLL_INTERVAL=0)",
        settings.reconcile_cron,
        os.environ.get("TZ", "system time zone"),
    )
    try:
        build(settings, redis).start()
    except RedisConnectionError as exc:  # systemd restarts it; Redis may be back by then
        log.error("Redis unreachable: %s", connection.why(exc))
        return 1
    return 0


def _api_settings(env: Mapping[str, str]) -> Settings | None:
    """The API settings, for the start-up warnings only: the scheduler never calls the APIs,
    so it runs without them (the worker, which does, refuses to start). A targets file, though,
    is checked by every process: one with a mistake stops the scheduler too (status 2)."""
    try:
        return Settings.from_env(env)
    except ConfigError as exc:
        if str(exc).startswith("BQN_TARGETS_FILE"):
            print(f"{PROG}: {exc}", file=sys.stderr)
            raise SystemExit(startup.EXIT_CONFIG) from None
        return None


if __name__ == "__main__":
    sys.exit(main())
