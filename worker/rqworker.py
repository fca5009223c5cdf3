"""The RQ worker the Procfile runs: RQ's SimpleWorker, logging through `worker.logs`.

`rq worker` gives RQ's `rq.worker` logger handlers of its own (their own format, lines below
ERROR on standard output) and leaves our loggers without any. This worker sends RQ's lines and
ours through `logs.configure()` instead, on standard error in one format, with the job and
client named on every line logged while a job runs. RQ's debug line with a job's return value
is dropped: results name subscribers (client names).
"""

from __future__ import annotations

import logging
from typing import Any

from rq import SimpleWorker
from rq.job import Job
from rq.logutils import ColorizingStreamHandler, colorizer
from rq.queue import Queue

from worker import logs
from worker.queue import queueing

RESULT_LINE = "Worker %s: result: %r"


class LoggingWorker(SimpleWorker):
    """SimpleWorker whose lines, and its jobs' lines, come out through `worker.logs`."""

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        """Configure logging (LOG_LEVEL, LOG_FORMAT), then start as RQ does."""
        logs.configure()
        take_over_rq_logging()
        super().bootstrap(*args, **kwargs)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job with its id (and client) on every line, RQ's included."""
        with logs.job_context(job.id, queueing.client_of(job)):
            super().execute_job(job, queue)


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
