"""Progress of a long full sync, for a person watching a terminal: how many clients have been
read and operations applied, the rate and the time left. Quiet unless asked for."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import TextIO

# (stage, done, total): called from any thread as work completes.
Progress = Callable[[str, int, int], None]
UPDATES_PER_SECOND = 10


def silent(stage: str, done: int, total: int) -> None:
    """Show nothing."""


class Ticker:
    """Counts completions of `total` items across threads and reports each to `progress`."""

    def __init__(self, progress: Progress, stage: str, total: int) -> None:
        self.progress, self.stage, self.total = progress, stage, total
        self.done = 0
        self.lock = threading.Lock()

    def tick(self, count: int = 1) -> None:
        with self.lock:
            self.done += count
            done = self.done
        self.progress(self.stage, done, self.total)


class TerminalProgress:
    """One line rewritten in place: `stage: done/total (rate/s, N s left)`, updated at most
    ten times a second and always at the end of a stage; `close()` wipes it. Other lines for
    the same terminal (the log's, with `-v`) go through `above()`, or they would be written
    onto the progress line."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.lock = threading.Lock()
        self.stage = ""
        self.started = self.shown_at = 0.0
        self.width = 0
        self.shown = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        with self.lock:
            now = self.clock()
            if stage != self.stage:
                self.stage, self.started, self.shown_at = stage, now, float("-inf")
            if done < total and now - self.shown_at < 1 / UPDATES_PER_SECOND:
                return
            self.shown_at = now
            self._show(line(stage, done, total, now - self.started))

    def close(self) -> None:
        """Wipe the line, so that what is printed next starts clean."""
        with self.lock:
            self._wipe()
            self.shown = ""
            self.stream.flush()

    def above(self) -> Above:
        """A stream for whole lines written above the progress line (a logging handler's)."""
        return Above(self)

    def write_above(self, text: str) -> None:
        """Write `text`, whole lines, with the progress line wiped first and drawn again
        after, so that each line stands on its own."""
        with self.lock:
            self._wipe()
            self.stream.write(text)
            if self.shown and text.endswith("\n"):
                self._show(self.shown)
            self.stream.flush()

    def _show(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)
        self.shown = text

    def _wipe(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0


class Above(io.TextIOBase):
    """The terminal of a `TerminalProgress` as a stream, for other lines
    (`TerminalProgress.write_above`)."""

    def __init__(self, progress: TerminalProgress) -> None:
        super().__init__()
        self.progress = progress

    def write(self, text: str) -> int:
        self.progress.write_above(text)
        return len(text)

    def flush(self) -> None:
        self.progress.stream.flush()


def line(stage: str, done: int, total: int, seconds: float) -> str:
    """`clients read: 2,000/10,000 (1,000/s, 8 s left)`."""
    text = f"{stage}: {done:,}/{total:,}"
    if seconds <= 0 or done <= 0:
        return text
    rate = done / seconds
    left = (total - done) / rate
    return (
        f"{text} ({rate:,.0f}/s, {left:,.0f} s left)" if done < total else f"{text} ({rate:,.0f}/s)"
    )
