"""Log lines for every process: one line per event on standard error, as text or JSON.

`LOG_LEVEL` (default INFO) and `LOG_FORMAT` (`text`, the default, or `json`) choose them. While a
job runs (`job_context`), each line names the job and, for a client job, the client:

    2026-11-26 06:20:36,123 INFO worker.queue.lifecycle [job=sync-12-ab12cd client=12] message
    {"time": "2026-11-26T06:20:36.123-05:00", "level": "INFO", "logger": "worker.queue.lifecycle",
     "message": "message", "job_id": "sync-12-ab12cd", "id_servicio": 12}

Only these fields are written: whatever else a library attaches to a record (RQ attaches a
job's arguments to its error lines) stays out.

Nothing a sender puts in a request (a path with `%0d` or `%1b`, a header) can break a line or
reach an operator's terminal raw, or pass for an escape: a text line writes every character
that does not print as itself (control, format and separator characters) as a visible escape
(`\\n`, `\\r`, `\\x1b`, `\\u202e`) and a backslash as `\\\\`, and a JSON line escapes every
character outside printable ASCII.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from worker.core.errors import ConfigError

LEVEL_ENV, FORMAT_ENV = "LOG_LEVEL", "LOG_FORMAT"
TEXT, JSON = "text", "json"
TEXT_LINE = "%(asctime)s %(levelname)s %(name)s %(context)s%(message)s"
# urllib3 logs connection details and retries at debug level; keep it to warnings.
QUIET_LOGGERS = {"urllib3": logging.WARNING}

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}

_job: ContextVar[tuple[str | None, int | None]] = ContextVar("log_job", default=(None, None))


@contextmanager
def job_context(job_id: str, id_servicio: int | None) -> Iterator[None]:
    """Name this job (and its client, if it has one) on every line logged inside the block."""
    token = _job.set((job_id, id_servicio))
    try:
        yield
    finally:
        _job.reset(token)


class Demoted(logging.Filter):
    """On a logger, lowers the INFO lines `routine` picks to DEBUG, shown only when that
    logger logs DEBUG (`LOG_LEVEL=DEBUG`): for a library's lines about routine work (RQ's
    about every poll), so that INFO says what happened, not that nothing did."""

    def __init__(self, routine: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__()
        self.routine = routine

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self.routine(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


class JobContextFilter(logging.Filter):
    """Sets `job_id` and `id_servicio` on every record: the current job's, or None."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id, record.id_servicio = _job.get()
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [job=… client=…] message`, the bracket only inside a job. Every
    control character of the line, its message, arguments and traceback included, is written
    as an escape (`escape`): a line break as `\\n`, so an event stays one line
    (`sed 's/\\\\n/\\n/g'` unfolds a traceback)."""

    def __init__(self) -> None:
        super().__init__(TEXT_LINE)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return TEXT_LINE % {**vars(record), "context": _context(record)}

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, the job's ids, `exc_info`,
    ASCII only (`json` then escapes every control character, C1 and U+2028 included)."""

    def __init__(self) -> None:
        super().__init__(json_ensure_ascii=True)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = (
            datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")
        )
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        job_id, id_servicio = _ids(record)
        if job_id is not None:
            log_data["job_id"] = job_id
        if id_servicio is not None:
            log_data["id_servicio"] = id_servicio
        for key in ("exc_info", "stack_info"):
            if message_dict.get(key):
                log_data[key] = message_dict[key]


FORMATTERS: dict[str, type[logging.Formatter]] = {TEXT: TextFormatter, JSON: JsonLineFormatter}


class Handler(logging.StreamHandler):
    """The stream handler `configure` installs, with the job context filter."""

    def __init__(self, fmt: str = TEXT, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self.setFormatter(formatter(fmt))
        self.addFilter(JobContextFilter())


def configure(
    level: int | str | None = None, fmt: str | None = None, stream: TextIO | None = None
) -> None:
    """Send every logger's lines through one handler on `stream` (standard error), replacing
    the one an earlier call installed. `level` and `fmt` default to `LOG_LEVEL`/`LOG_FORMAT`."""
    number, name = _resolve(level, fmt)
    handler = Handler(name, stream)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(number)
    for quiet, quiet_level in _quiet_levels(number).items():
        logging.getLogger(quiet).setLevel(quiet_level)


def dict_config(level: int | str | None = None, fmt: str | None = None) -> dict[str, Any]:
    """`configure` as a `logging.config.dictConfig` dictionary, with gunicorn's error and
    access loggers sent through the same handler (for gunicorn's `logconfig_dict`)."""
    number, name = _resolve(level, fmt)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {},
        "handlers": {"main": {"()": Handler, "fmt": name}},
        "root": {"level": number, "handlers": ["main"]},
        "loggers": {
            **{
                gunicorn: {"level": "NOTSET", "handlers": [], "propagate": True}
                for gunicorn in ("gunicorn.error", "gunicorn.access")
            },
            **{quiet: {"level": value} for quiet, value in _quiet_levels(number).items()},
        },
    }


def escape(text: str) -> str:
    """`text` with each character that does not print as itself written as a visible escape:
    control characters (line breaks, ESC, C1), format characters (bidi overrides, zero-width)
    and separators (`\\r`, `\\x1b`, `\\u202e`), and a backslash as `\\\\`, so no escape can be
    forged either."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escaped(char) for char in text)


def _escaped(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if char.isprintable():
        return char
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def level_from(env: Mapping[str, str]) -> str:
    """`LOG_LEVEL` from `env`, INFO when unset or empty."""
    return env.get(LEVEL_ENV, "").strip() or "INFO"


def format_from(env: Mapping[str, str]) -> str:
    """`LOG_FORMAT` from `env`, text when unset or empty."""
    return env.get(FORMAT_ENV, "").strip() or TEXT


def parse_level(level: int | str) -> int:
    """A level number from a number or a name such as `info`; ConfigError otherwise."""
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None:
        raise ConfigError(
            f"{LEVEL_ENV} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {level!r}"
        )
    return number


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for `text` or `json`; ConfigError otherwise."""
    kind = FORMATTERS.get(fmt.strip().lower())
    if kind is None:
        raise ConfigError(f"{FORMAT_ENV} must be {TEXT!r} or {JSON!r}, not {fmt!r}")
    return kind()


def _resolve(level: int | str | None, fmt: str | None) -> tuple[int, str]:
    """The level number and the format name, from the arguments or else the environment."""
    number = parse_level(level_from(os.environ) if level is None else level)
    name = format_from(os.environ) if fmt is None else fmt
    formatter(name)  # refuse a wrong format before anything is replaced
    return number, name


def _quiet_levels(level: int) -> dict[str, int]:
    return {name: max(floor, level) for name, floor in QUIET_LOGGERS.items()}


def _ids(record: logging.LogRecord) -> tuple[str | None, int | None]:
    return getattr(record, "job_id", None), getattr(record, "id_servicio", None)


def _context(record: logging.LogRecord) -> str:
    job_id, id_servicio = _ids(record)
    if job_id is None:
        return ""
    client = "" if id_servicio is None else f" client={id_servicio}"
    return f"[job={job_id}{client}] "
