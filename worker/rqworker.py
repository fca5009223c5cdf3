"""The RQ workers the Procfile runs (`wisphub-bqn-sync-worker`): RQ's SimpleWorker, logging
through `worker.logs`, in a pool of `WORKER_PROCESSES` processes.

The command takes its Redis and queue from `REDIS_URL` and `QUEUE_NAME` like every other
process, never from its command line (where any local user would read the Redis password in
`ps`), and without `REDIS_URL` it stops with one line: it has no default Redis to fall back
on. `rq worker --worker-class worker.rqworker.LoggingWorker` runs one such worker, for units
written for earlier releases.

The jobs wait on WispHub and the BQN, not on the CPU, so the command runs several workers at
once: RQ's `WorkerPool` forks `WORKER_PROCESSES` of them (`--processes` overrides it), starts
another when one dies, and on SIGTERM asks each to finish the job in hand and stop.

`rq worker` gives RQ's `rq.worker` logger handlers of its own (their own format, lines below
ERROR on standard output) and leaves our loggers without any. This worker sends RQ's lines and
ours through `logs.configure()` instead, on standard error in one format, with the job and
client named on every line logged while a job runs. RQ's debug line with a job's return value
is dropped: results name subscribers (client names). Its lines about each poll job and about
the registries it cleans every few seconds are DEBUG, not INFO (`routine`): at INFO a poll
that found nothing says nothing.

Before any worker registers in Redis the command checks every setting the jobs read: a wrong
one stops it with one line and exit status 2, which the systemd unit does not restart on.

While a job runs, its worker renews the job's place in RQ's started registry every
`JOB_HEARTBEAT_SECONDS`, for `JOB_HEARTBEAT_TTL`: the job of a worker killed mid-job (SIGKILL,
the OOM killer) is found abandoned by RQ's maintenance within a minute and runs again (the RQ
retries it was queued with), instead of after its whole timeout.

While writes are paused (`worker.queue.pause`: RQ's suspension) the workers take no job; one
taken just as the pause began goes back to the head of the queue.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.executions import Execution
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.logutils import ColorizingStreamHandler, colorizer
from rq.queue import Queue
from rq.worker_pool import ForkProcess, WorkerPool

from worker import defaults, logs
from worker.core.errors import ConfigError
from worker.queue import connection, liveness, pause, queueing, startup
from worker.queue.lifecycle import DeletionsHeldBack
from worker.queue.runtime import runtime
from worker.settings import Settings
from worker.version import add_version_option

RESULT_LINE = "Worker %s: result: %r"
# RQ's description of a poll job, in its lines about the job.
POLL_DESCRIPTION = f"{queueing.POLL_CHANGES.path}()"
# RQ's lines about the registries it cleans every WORKER_MAINTENANCE_SECONDS, in each worker.
MAINTENANCE_LINES = (
    "Worker %s: cleaning registries for queue: %s",
    "Worker %s: cleaning group registries",
)
PROG = "wisphub-bqn-sync-worker"

log = logging.getLogger(__name__)

# Whether the job this worker runs is a poll (`routine`).
_polling: ContextVar[bool] = ContextVar("polling", default=False)


class JobHeartbeat:
    """Renews a running job's place in RQ's started registry (and its worker's registration)
    from a thread, with RQ's own `maintain_heartbeats`: what RQ's forking worker does while
    its work horse runs, which a SimpleWorker, running the job itself, cannot."""

    def __init__(self, worker: SimpleWorker, job: Job, execution: Execution) -> None:
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._beat,
            args=(worker, job, execution),
            name=f"heartbeat {job.id}",
            daemon=True,
        )
        self._thread.start()

    def _beat(self, worker: SimpleWorker, job: Job, execution: Execution) -> None:
        while not self._stopped.wait(defaults.JOB_HEARTBEAT_SECONDS):
            try:
                worker.maintain_heartbeats(job, execution)
                liveness.renew(worker.connection, job.id)  # the job's locks live while it does
            except RedisError as exc:  # the next beat tries again: the TTL allows for five
                log.warning("heartbeat of job %s failed: %s", job.id, exc)

    def stop(self) -> None:
        """Renew no more: the job has ended, and RQ takes it out of the registry."""
        self._stopped.set()
        self._thread.join(timeout=defaults.JOB_HEARTBEAT_TTL)  # a beat stuck on Redis


class PromptStop(SimpleWorker):
    """RQ's SimpleWorker whose stop takes a second, not a minute: RQ listens for commands in
    a thread that waits up to 60 s for a message, and redis-py 8 waits for that thread when
    the worker unsubscribes (`PubSubWorkerThread.stop`). Here it waits a second at a time."""

    def subscribe(self) -> None:
        """RQ's subscription to the worker's command channel, read every second."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )


class LoggingWorker(PromptStop):
    """SimpleWorker whose lines, and its jobs' lines, come out through `worker.logs`, and whose
    running job is seen abandoned within `JOB_HEARTBEAT_TTL` of the worker's death."""

    # Whether the worker says which Redis it uses and what TLS leaves unchecked when it
    # starts; the pool's workers leave it to the command, which says it once for them all.
    announces: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """RQ's worker with the service's maintenance interval and TTL, which RQ's worker pool
        does not pass (`rq.worker_pool.run_worker`)."""
        kwargs.setdefault("maintenance_interval", defaults.WORKER_MAINTENANCE_SECONDS)
        kwargs.setdefault("worker_ttl", defaults.WORKER_TTL_SECONDS)
        super().__init__(*args, **kwargs)
        self._heartbeat: JobHeartbeat | None = None

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        """Configure logging (LOG_LEVEL, LOG_FORMAT) and check the settings, say which Redis
        this worker uses and what TLS leaves unchecked, then start as RQ does."""
        settings = checked_settings(lambda: runtime().settings)
        take_over_rq_logging()
        if self.announces:
            startup.announce("worker", self.connection, settings)
        super().bootstrap(*args, **kwargs)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """`JOB_HEARTBEAT_TTL`, renewed while the job runs (`JobHeartbeat`); a SimpleWorker's
        own is the job's whole timeout and a minute, set once."""
        return defaults.JOB_HEARTBEAT_TTL

    def prepare_execution(self, job: Job) -> Execution:
        """RQ's record of the job's run, its heartbeat started."""
        execution = super().prepare_execution(job)
        self._heartbeat = JobHeartbeat(self, job, execution)
        return execution

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """Stop the heartbeat before RQ records how the job ended."""
        self._stop_heartbeat()
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job with its id (and client) on every line, RQ's included; unless writes
        were paused while this worker waited on the queue (`worker.queue.pause`): then the job
        goes back to the head of the queue, and the worker waits with the others."""
        with logs.job_context(job.id, queueing.client_of(job)), _running(job):
            if pause.hold_back(job, queue):
                self.log.info("Worker %s: writes are paused; job %s waits", self.name, job.id)
                return
            try:
                super().execute_job(job, queue)
            finally:
                self._stop_heartbeat()  # also when RQ failed before the job ran

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

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


class PoolWorker(LoggingWorker):
    """One of the command's workers: the command has checked the settings and said which Redis
    it uses, once for them all, before it forked them."""

    announces = False


class Pool(WorkerPool):
    """RQ's worker pool whose workers use the command's own Redis client (forked with it:
    redis-py's pools open new connections in a child). RQ's rebuilds each worker's client as
    a plain pool from the client's connection class and arguments (`rq.worker_pool.
    run_worker`), which would lose Sentinel's: the workers would not follow a failover."""

    def get_worker_process(
        self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO"
    ) -> ForkProcess:
        return ForkProcess(
            target=self._run_worker,
            args=(name, burst, logging_level),
            name=f"Worker {name} (WorkerPool {self.name})",
        )

    def _run_worker(self, name: str, burst: bool, logging_level: str) -> None:
        """What RQ's `run_worker` does, with the pool's client."""
        worker = self.worker_class(
            self.queues,
            name=name,
            connection=self.connection,
            serializer=self.serializer,
            job_class=self.job_class,
            queue_class=self.queue_class,
            exception_handlers=self.exception_handlers,
        )
        worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)


def checked_settings(read: Callable[[], Settings]) -> Settings:
    """Logging configured (LOG_LEVEL, LOG_FORMAT) and the settings the jobs read, from `read`;
    a wrong setting stops the process with one line and exit status 2."""
    try:
        logs.configure()
        return read()
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        raise SystemExit(startup.EXIT_CONFIG) from None


def take_over_rq_logging() -> None:
    """Remove the handlers RQ's command line gave `rq.worker`, so that its lines reach ours at
    `LOG_LEVEL` (RQ sets INFO on it), plain (no terminal colours) and without job results."""
    logger = logging.getLogger("rq.worker")
    for handler in [h for h in logger.handlers if isinstance(h, ColorizingStreamHandler)]:
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
    logger.addFilter(without_result)  # once: a filter already there is not added again
    logger.addFilter(ROUTINE)
    colorizer.notty = True


def without_result(record: logging.LogRecord) -> bool:
    """False for RQ's debug line that shows a job's return value."""
    return record.msg != RESULT_LINE


def routine(record: logging.LogRecord) -> bool:
    """Whether an RQ line is about routine work: a poll job (taken, done, its result kept:
    four lines every `POLL_INTERVAL`; the poll itself says at INFO when it found something,
    `worker.queue.passes`) or the registries cleaned every few seconds."""
    args = record.args if isinstance(record.args, tuple) else ()
    return record.msg in MAINTENANCE_LINES or _polling.get() or POLL_DESCRIPTION in args


# On `rq.worker`: its routine lines at DEBUG.
ROUTINE = logs.Demoted(routine)


@contextmanager
def _running(job: Job) -> Iterator[None]:
    """Note for `routine`, while `job` runs, whether it is a poll."""
    token = _polling.set(job.description == POLL_DESCRIPTION)
    try:
        yield
    finally:
        _polling.reset(token)


def process_count(text: str) -> int:
    """`--processes`: a whole number from 1 to `WORKER_MAX_PROCESSES`."""
    most = defaults.WORKER_MAX_PROCESSES
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= most:
        raise argparse.ArgumentTypeError(f"must be between 1 and {most}, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """`wisphub-bqn-sync-worker`: run the pool of workers on the service's queue, with RQ's
    scheduler for the retries, until it is told to stop (SIGTERM: each worker finishes the job
    in hand first)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Run the RQ workers of wisphub-bqn-sync: WORKER_PROCESSES processes take jobs from "
            "QUEUE_NAME in the Redis at REDIS_URL and apply them to the BQN; one that dies is "
            "started again."
        ),
        epilog="Exit status: 2 for a configuration error (one line says which setting).",
    )
    parser.add_argument("--burst", action="store_true", help="stop once the queue is empty")
    parser.add_argument(
        "--processes",
        type=process_count,
        metavar="N",
        help="worker processes, instead of WORKER_PROCESSES",
    )
    add_version_option(parser)
    args = parser.parse_args(argv)
    service, redis = startup.connect(PROG)
    settings = checked_settings(lambda: Settings.from_env(os.environ))
    try:
        redis.ping()
    except RedisConnectionError as exc:  # systemd restarts it; Redis may be back by then
        log.error("Redis unreachable: %s", connection.why(exc))
        return 1
    startup.announce("worker", redis, settings)
    pool = Pool(
        [queueing.make_queue(redis, service.queue_name)],
        connection=redis,
        num_workers=args.processes or service.worker_processes,
        worker_class=PoolWorker,
    )
    pool.start(burst=args.burst, logging_level=logs.level_from(os.environ))
    return 0
