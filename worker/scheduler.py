"""`wisphub-bqn-sync-scheduler`: queues the change poller every `POLL_INTERVAL` seconds, the plan
refresh every `PLAN_REFRESH_INTERVAL` seconds and the full reconcile at `RECONCILE_CRON` (local
time, as set by `TZ`), using RQ's cron scheduler.

Exactly one scheduler is active: each one must hold a lock in Redis, renewed at every beat, so
a second process started by mistake (or as a standby) waits and takes over only when the first
one is gone.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from redis import Redis
from redis.exceptions import LockError
from redis.lock import Lock
from rq.cron import CronScheduler
from rq.exceptions import StopRequested

from worker import jobs, logs, queueing, store
from worker.errors import ConfigError
from worker.settings import ServiceSettings

log = logging.getLogger(__name__)

# The cron loop beats at least once a minute; the lock outlives two missed beats.
LEADER_LOCK_SECONDS = 150
STANDBY_RETRY_SECONDS = 15


class LeaderCronScheduler(CronScheduler):
    """RQ's cron scheduler that runs only while it holds the leader lock."""

    def __init__(self, connection: Redis, leader: Lock, settings: ServiceSettings) -> None:
        super().__init__(connection=connection)
        self.leader = leader
        self.settings = settings

    def start(self) -> None:
        """Wait to become the leader, queue the start-up reconcile, then run the cron loop."""
        while not self.leader.acquire(blocking=False):
            log.info("another scheduler is active; standing by")
            time.sleep(STANDBY_RETRY_SECONDS)
        log.info("scheduler %s is active", self.name)
        if self.settings.reconcile_on_start:
            queue = queueing.make_queue(self.connection, self.settings.queue_name)
            job_id = queueing.enqueue_reconcile(queue, dry_run=False)
            log.info("queued the start-up reconcile as job %s", job_id)
        try:
            super().start()
        finally:
            try:
                self.leader.release()
            except LockError:
                log.debug("leader lock had already expired")

    def heartbeat(self) -> None:
        """RQ's heartbeat, plus renewing the leader lock; stop if it was lost."""
        super().heartbeat()
        try:
            self.leader.reacquire()
        except LockError:
            log.error("scheduler lost its leader lock; stopping")
            raise StopRequested() from None


def build(settings: ServiceSettings, redis: Redis) -> LeaderCronScheduler:
    """A scheduler with the reconcile, plan refresh and poll jobs registered."""
    leader = store.singleton_lock(redis, "scheduler", LEADER_LOCK_SECONDS)
    scheduler = LeaderCronScheduler(redis, leader, settings)
    scheduler.register(
        jobs.reconcile,
        queue_name=settings.queue_name,
        cron=settings.reconcile_cron,
        kwargs={"dry_run": False},
        job_timeout=queueing.RECONCILE_JOB_TIMEOUT,
        result_ttl=queueing.RECONCILE_RESULT_TTL,
        failure_ttl=queueing.FAILURE_TTL,
    )
    every = [
        (jobs.sync_plans, settings.plan_refresh_interval, queueing.PLANS_JOB_TIMEOUT),
        (jobs.poll_changes, settings.poll_interval, queueing.POLL_JOB_TIMEOUT),
    ]
    for function, interval, timeout in every:
        if interval:
            scheduler.register(
                function,
                queue_name=settings.queue_name,
                interval=interval,
                job_timeout=timeout,
                result_ttl=queueing.POLL_RESULT_TTL,
                failure_ttl=queueing.FAILURE_TTL,
            )
    return scheduler


def main() -> int:
    """Run the scheduler until SIGTERM/SIGINT."""
    try:
        logs.configure()
        settings = ServiceSettings.from_env(os.environ)
    except ConfigError as exc:
        print(f"wisphub-bqn-sync-scheduler: {exc}", file=sys.stderr)
        return 2
    redis = Redis.from_url(settings.redis_url)
    log.info(
        "polling every %s; full reconcile at '%s' (%s)",
        f"{settings.poll_interval} s" if settings.poll_interval else "never (POLL_INTERVAL=0)",
        settings.reconcile_cron,
        os.environ.get("TZ", "system time zone"),
    )
    build(settings, redis).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
