"""The RQ worker the Procfile runs (`wisphub-bqn-sync-worker`): RQ's SimpleWorker, logging
through `worker.logs`.

The command takes its Redis and queue from `REDIS_URL` and `QUEUE_NAME` like every other
process, never from its command line (where any local user would read the Redis password in
`ps`), and without `REDIS_URL` it stops with one line: it has no default Redis to fall back
on. `rq worker --worker-class worker.rqworker.LoggingWorker` runs the same worker, for units
written for earlier releases.

`rq worker` gives RQ's `rq.worker` logger handlers of its own (their own format, lines below
ERROR on standard output) and leaves our loggers without any. This worker sends RQ's lines and
ours through `logs.configure()` instead, on standard error in one format, with the job and
client named on every line logged while a job runs. RQ's debug line with a job's return value
is dropped: results name subscribers (client names).

Before it registers in Redis the worker checks every setting its jobs read: a wrong one stops
it with one line and exit status 2, which the systemd unit does not restart on.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from rq import SimpleWorker
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.logutils import ColorizingStreamHandler, colorizer
from rq.queue import Queue

from worker import defaults, logs
from worker.core.errors import ConfigError
from worker.queue import queueing, startup
from worker.queue.lifecycle import DeletionsHeldBack
from worker.queue.runtime import runtime
from worker.version import add_version_option

RESULT_LINE = "Worker %s: result: %r"
PROG = "wisphub-bqn-sync-worker"


class LoggingWorker(SimpleWorker):
    """SimpleWorker whose lines, and its jobs' lines, come out through `worker.logs`."""

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        """Configure logging (LOG_LEVEL, LOG_FORMAT) and check the settings, say which Redis
        this worker uses and what TLS leaves unchecked, then start as RQ does."""
        try:
            logs.configure()
            settings = runtime().settings
        except ConfigError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            raise SystemExit(startup.EXIT_CONFIG) from None
        take_over_rq_logging()
        startup.announce("worker", self.connection, settings)
        super().bootstrap(*args, **kwargs)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job with its id (and client) on every line, RQ's included."""
        with logs.job_context(job.id, queueing.client_of(job)):
            super().execute_job(job, queue)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """A deletion-guard trip is the guard doing its work: the engine has logged its one
        warning with the reason, so RQ's word that the job failed is an info line, not an
        error with a traceback. The job still fails (listed among the failures); any other
        exception is logged by RQ with its traceback."""
        error = exc_info[1]
        if not isinstance(error, DeletionsHeldBack):
            super().handle_exception(job, *exc_info)
            return
        self.log.info("Worker %s: job %s failed: %s", self.name, job.id, error)
        call_exception_handlers(self._exc_handlers, job, *exc_info)


def take_over_rq_logging() -> None:
    """Remove the handlers RQ's command line gave `rq.worker`, so that its lines reach ours at
    `LOG_LEVEL` (RQ sets INFO on it), plain (no terminal colours) and without job results."""
    logger = logging.getLogger("rq.worker")
    for handler in [h for h in logger.handlers if isinstance(h, ColorizingStreamHandler)]:
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
    logger.addFilter(without_result)  # once: a filter already there is not added again
    colorizer.notty = True


def without_result(record: logging.LogRecord) -> bool:
    """False for RQ's debug line that shows a job's return value."""
    return record.msg != RESULT_LINE


def main(argv: Sequence[str] | None = None) -> int:
    """`wisphub-bqn-sync-worker`: run one worker on the service's queue, with RQ's scheduler
    for the retries, until it is told to stop (SIGTERM: the job in hand is finished first)."""
    parser = argparse.ArgumentParser(
        prog="wisphub-bqn-sync-worker",
        description=(
            "Run one RQ worker for wisphub-bqn-sync: it takes jobs from QUEUE_NAME in the Redis "
            "at REDIS_URL and applies them to the BQN. Run several for more throughput."
        ),
        epilog="Exit status: 2 for a configuration error (one line says which setting).",
    )
    parser.add_argument("--burst", action="store_true", help="stop once the queue is empty")
    add_version_option(parser)
    args = parser.parse_args(argv)
    service, redis = startup.connect(PROG)
    try:
        worker = LoggingWorker(
            [queueing.make_queue(redis, service.queue_name)],
            connection=redis,
            maintenance_interval=defaults.WORKER_MAINTENANCE_SECONDS,
        )
        worker.work(burst=args.burst, with_scheduler=True)
    except RedisConnectionError as exc:  # systemd restarts it; Redis may be back by then
        logging.getLogger(__name__).error("Redis unreachable: %s", exc)
        return 1
    return 0
