"""The terminal progress line: what it says, how often it is redrawn, and wiping it."""

import io
import logging

import pytest

from tests.terminal import screen
from worker.core.progress import TerminalProgress, Ticker, line


@pytest.mark.parametrize(
    ("done", "total", "seconds", "expected"),
    [
        pytest.param(0, 10_000, 0.0, "clients read: 0/10,000", id="nothing-yet"),
        pytest.param(
            2_000,
            10_000,
            2.0,
            "clients read: 2,000/10,000 (1,000/s, 8 s left)",
            id="rate-and-time-left",
        ),
        pytest.param(10_000, 10_000, 4.0, "clients read: 10,000/10,000 (2,500/s)", id="done"),
    ],
)
def test_the_line(done, total, seconds, expected):
    assert line("clients read", done, total, seconds) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_redrawn_at_most_ten_times_a_second_and_always_at_the_end():
    out, clock = io.StringIO(), Clock()
    show = TerminalProgress(out, clock)
    show("operations applied", 1, 100)
    clock.now += 0.01
    show("operations applied", 2, 100)  # too soon: not drawn
    clock.now += 0.2
    show("operations applied", 50, 100)
    show("operations applied", 100, 100)  # the end is always drawn
    frames = out.getvalue().split("\r")[1:]
    assert [frame.split(" (")[0].strip() for frame in frames] == [
        "operations applied: 1/100",
        "operations applied: 50/100",
        "operations applied: 100/100",
    ]
    show.close()
    assert out.getvalue().endswith("\r" + " " * len(frames[-1].rstrip()) + "\r")


def test_a_ticker_counts_completions_for_its_stage():
    seen = []
    ticker = Ticker(lambda stage, done, total: seen.append((stage, done, total)), "read", 5)
    ticker.tick(3)
    ticker.tick()
    assert seen == [("read", 3, 5), ("read", 4, 5)]


def test_lines_written_above_never_share_the_progress_line():
    """With `-v` the log's lines went onto the progress line, which ends in no line break."""
    out, clock = io.StringIO(), Clock()
    show = TerminalProgress(out, clock)
    log = logging.StreamHandler(show.above())
    log.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    show("clients read", 5, 10)
    log.emit(logging.makeLogRecord({"levelname": "INFO", "msg": "first"}))
    clock.now += 1
    show("clients read", 10, 10)
    # while it runs, the progress line stays below the lines written
    assert screen(out.getvalue()) == ["INFO first", "clients read: 10/10 (10/s)"]
    log.emit(logging.makeLogRecord({"levelname": "INFO", "msg": "second"}))
    assert screen(out.getvalue()) == ["INFO first", "INFO second", "clients read: 10/10 (10/s)"]
    show.close()
    log.emit(logging.makeLogRecord({"levelname": "INFO", "msg": "after"}))
    assert screen(out.getvalue()) == ["INFO first", "INFO second", "INFO after", ""]
