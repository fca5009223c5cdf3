"""A poll logs at INFO only when it found something (issue 17): five INFO lines every
`POLL_INTERVAL`, RQ's and ours, scrolled the demo's guide away. Real Redis, the service's own
RQ worker class and scheduler, the simulators."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from rq import Queue

from tests.rows import row
from worker.queue import queueing, store
from worker.queue.scheduler import build
from worker.rqworker import LoggingWorker
from worker.settings import ServiceSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def info_lines(
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Callable[[Callable[[], object]], list]]:
    """Run something and return the lines the service logged at INFO and above; the root
    logger's handlers and level (which the worker sets up as the service does) are put back
    after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def lines(action: Callable[[], object]) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            action()
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.INFO and not r.name.startswith("sandbox")  # simulators'
        ]

    yield lines
    root.handlers[:] = handlers
    root.setLevel(level)


def run_worker(queue: Queue) -> None:
    """The service's worker, in burst mode, under a name of its own (the same each time)."""
    LoggingWorker([queue], connection=queue.connection, name="poll-logging").work(burst=True)


def test_a_poll_that_finds_nothing_says_nothing_at_info(
    work, queue, redis, wisphub_sim, bqn_sim, info_lines
):
    wisphub_sim.load(5)
    wisphub_sim.state.upsert_client(row(77, "10.77.0.1", "Activo", "Online_basico", "Ema"))
    queueing.enqueue_reconcile(queue, dry_run=False)
    work()
    queue.enqueue(queueing.POLL_CHANGES.path)  # the first pass: the snapshot
    work()

    def poll() -> None:
        redis.set(store.SNAPSHOT_TAKEN, 0)  # the last pass is old: this poll runs
        queue.enqueue(queueing.POLL_CHANGES.path)
        run_worker(queue)

    idle = info_lines(lambda: run_worker(queue))
    quiet = info_lines(poll)
    assert quiet == idle  # what a worker says anyway, and nothing about the poll
    wisphub_sim.state.update_client(77, estado="Suspendido")
    found = info_lines(poll)
    assert "poll: 6 clients read, 1 changed, 1 syncs asked for" in found
    assert any("sync client 77" in line for line in found)  # RQ's lines, as before


def test_the_scheduler_queues_polls_quietly(service_env, redis, info_lines):
    scheduler = build(ServiceSettings.from_env(service_env), redis)
    crons = {job.func_name: job for job in scheduler.get_jobs()}
    assert info_lines(lambda: crons[queueing.POLL_CHANGES.path].enqueue(redis)) == []
    queued = info_lines(lambda: crons[queueing.RECONCILE.path].enqueue(redis))
    assert queued == [f"Enqueued job reconcile to queue {ServiceSettings.queue_name}"]
