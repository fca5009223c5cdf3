"""Running I/O-bound work on several items at once, with a bound on how many are in flight."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def run_all(work: Callable[[T], R], items: Sequence[T], concurrency: int) -> list[R]:
    """`work` on every item with up to `concurrency` at once; results in the items' order.
    The first exception cancels what has not started and is raised. Each item runs in a copy
    of the caller's context, so log lines still name the job (`worker.logs.job_context`)."""
    if concurrency <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    caller = copy_context()
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(items)))
    try:
        return list(pool.map(lambda item: caller.copy().run(work, item), items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
