"""Log lines: the text and JSON formats (every control character escaped), the job context,
the settings, the RQ worker's hold on RQ's own logging, and how a process names its Redis."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from redis import Redis
from rq.job import Job
from rq.logutils import ColorizingStreamHandler

from worker import logs, rqworker
from worker.core.errors import ConfigError
from worker.queue import connection, queueing

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<rest>.*)$")
LOGGERS = ("", "urllib3", "rq.worker", "gunicorn.error", "gunicorn.access")


@pytest.fixture(autouse=True)
def saved_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts without LOG_* variables and leaves the loggers as it found them."""
    monkeypatch.delenv(logs.LEVEL_ENV, raising=False)
    monkeypatch.delenv(logs.FORMAT_ENV, raising=False)
    saved = [
        (logger, logger.level, list(logger.handlers), list(logger.filters), logger.propagate)
        for logger in map(logging.getLogger, LOGGERS)
    ]
    yield
    for logger, level, handlers, filters, propagate in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.filters[:] = filters
        logger.propagate = propagate


def lines_of(
    fmt: str | None, emit: Callable[[], None], level: int | str | None = logging.DEBUG
) -> list[str]:
    """What `emit()` logs once `configure(level, fmt)` is in place, line by line."""
    stream = io.StringIO()
    logs.configure(level, fmt, stream)
    emit()
    return stream.getvalue().splitlines()


def test_a_text_line_names_time_level_and_logger():
    [line] = lines_of("text", lambda: logging.getLogger("worker.jobs").info("hello %s", "there"))
    assert TEXT_LINE.match(line)["rest"] == "INFO worker.jobs hello there"


def test_a_text_line_in_a_job_names_the_job_and_the_client():
    def emit() -> None:
        with logs.job_context("sync-12-ab12cd", 12):
            logging.getLogger("worker.jobs").warning("client job")
        with logs.job_context("reconcile-1", None):
            logging.getLogger("rq.worker").info("job without a client")
        logging.getLogger("worker.jobs").info("after")

    rests = [TEXT_LINE.match(line)["rest"] for line in lines_of("text", emit)]
    assert rests == [
        "WARNING worker.jobs [job=sync-12-ab12cd client=12] client job",
        "INFO rq.worker [job=reconcile-1] job without a client",
        "INFO worker.jobs after",
    ]


def test_job_contexts_nest_and_end_with_their_block():
    def emit() -> None:
        with logs.job_context("outer", 1):
            with logs.job_context("inner", 2):
                logging.getLogger("worker").info("inner")
            logging.getLogger("worker").info("outer")
        logging.getLogger("worker").info("none")

    records = [json.loads(line) for line in lines_of("json", emit)]
    assert [(r.get("job_id"), r.get("id_servicio")) for r in records] == [
        ("inner", 2),
        ("outer", 1),
        (None, None),
    ]


def test_a_json_line_has_the_documented_fields_only():
    def emit() -> None:
        logging.getLogger("worker.sync.apply").info("outside")
        with logs.job_context("sync-7-0123", 7):
            logging.getLogger("worker.sync.apply").info("inside", extra={"cedula": "1012345678"})

    outside, inside = (json.loads(line) for line in lines_of("json", emit))
    assert set(outside) == {"time", "level", "logger", "message"}
    assert outside["level"] == "INFO"
    assert outside["logger"] == "worker.sync.apply"
    assert datetime.fromisoformat(outside["time"]).tzinfo is not None
    assert {k: v for k, v in inside.items() if k != "time"} == {
        "level": "INFO",
        "logger": "worker.sync.apply",
        "message": "inside",
        "job_id": "sync-7-0123",
        "id_servicio": 7,
    }


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_what_a_library_attaches_to_a_record_stays_out(fmt):
    # RQ attaches a failed job's arguments to its error line
    extra = {"arguments": ["Zoraida Quintero"], "kwargs": {"telefono": "3001234567"}}
    [line] = lines_of(fmt, lambda: logging.getLogger("rq.worker").error("failed", extra=extra))
    assert "Zoraida" not in line
    assert "3001234567" not in line


def test_a_text_event_stays_on_one_line():
    def emit() -> None:
        logging.getLogger("rq.worker").error("first\nsecond\r\nthird")
        with logs.job_context("sync-12-ab12cd", 12):
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError:
                logging.getLogger("worker.jobs").exception("job failed")

    message, failure = lines_of("text", emit)
    assert message.endswith("first\\nsecond\\r\\nthird")
    assert "[job=sync-12-ab12cd client=12] job failed\\nTraceback" in failure
    assert failure.endswith("ZeroDivisionError: division by zero")


# What a request path such as `/%0d%1b[2J%c2%9b` decodes to: every kind of control character.
HOSTILE = "\r\x00\x07\x1b[2J\x7f\x85\x9b\u2028\u2029\t"
SHOWN = "\\r\\x00\\x07\\x1b[2J\\x7f\\x85\\x9b\\u2028\\u2029\\t"


CONTROL = {*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029}


def no_control_characters(line: str) -> bool:
    return not any(ord(char) in CONTROL for char in line)


def test_every_control_character_of_a_text_line_is_escaped():
    def emit() -> None:
        logging.getLogger("gunicorn.access").info('"GET %s" 404', f"/x{HOSTILE}")
        logging.getLogger("worker").warning(f"message {HOSTILE}")
        try:
            raise ValueError(f"exception {HOSTILE}")
        except ValueError:
            logging.getLogger("worker").exception("failed")

    argument, message, failure = lines_of("text", emit)
    assert argument.endswith(f'"GET /x{SHOWN}" 404')
    assert message.endswith(f"message {SHOWN}")
    assert failure.endswith(f"ValueError: exception {SHOWN}")
    assert all(map(no_control_characters, (argument, message, failure)))


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\\n2026-12-07 WARNING forged", "\\\\n2026-12-07 WARNING forged"),
        ("\u202etxt.exe", "\\u202etxt.exe"),  # a bidi override turns the rest around
        ("a\u200bb\ufeff", "a\\u200bb\\ufeff"),  # invisible characters
    ],
    ids=["backslash", "bidi", "zero-width"],
)
def test_nothing_in_a_text_line_can_pass_for_an_escape_or_hide(raw, shown):
    """A literal backslash would make `\\n` in a path look like an escaped line break."""

    def emit() -> None:
        logging.getLogger("gunicorn.access").info('"GET %s" 404', f"/x{raw}")

    [line] = lines_of("text", emit)
    assert line.endswith(f'"GET /x{shown}" 404')


def test_every_control_character_of_a_json_line_is_escaped():
    def emit() -> None:
        logging.getLogger("gunicorn.access").info('"GET %s" 404', f"/x{HOSTILE}")
        try:
            raise ValueError(f"exception {HOSTILE}")
        except ValueError:
            logging.getLogger("worker").exception(f"failed {HOSTILE}")

    stream = io.StringIO()
    logs.configure(logging.DEBUG, "json", stream)
    emit()
    lines = stream.getvalue().split("\n")
    assert lines.pop() == ""
    assert all(line.isascii() and no_control_characters(line) for line in lines)
    access, failure = map(json.loads, lines)
    assert access["message"] == f'"GET /x{HOSTILE}" 404'
    assert failure["message"] == f"failed {HOSTILE}"
    assert failure["exc_info"].endswith(f"ValueError: exception {HOSTILE}")


def test_a_json_message_with_newlines_stays_on_one_line():
    message = "first\nsecond\r\nthird"
    [line] = lines_of("json", lambda: logging.getLogger("rq.worker").error(message))
    assert json.loads(line)["message"] == message


def test_a_json_exception_is_a_field_of_its_line():
    def emit() -> None:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logging.getLogger("worker.jobs").exception("job failed")

    [line] = lines_of("json", emit)
    record = json.loads(line)
    assert record["message"] == "job failed"
    assert record["exc_info"].startswith("Traceback")
    assert "ZeroDivisionError" in record["exc_info"]


def test_the_settings_come_from_the_environment(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOG_FORMAT", " JSON ")
    logs.configure(stream=stream)
    logging.getLogger("worker").debug("shown")
    assert json.loads(stream.getvalue())["message"] == "shown"
    assert logging.getLogger().level == logging.DEBUG
    # urllib3 stays at warnings, as in the CLI, even at debug
    assert logging.getLogger("urllib3").level == logging.WARNING


def test_the_defaults_are_info_and_text(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "")  # empty is unset
    [line] = lines_of(None, lambda: logging.getLogger("worker").info("plain"), level=None)
    assert TEXT_LINE.match(line)["rest"] == "INFO worker plain"
    assert logging.getLogger().level == logging.INFO


def test_a_quiet_level_also_quiets_urllib3():
    logs.configure(logging.ERROR, "text", io.StringIO())
    assert logging.getLogger("urllib3").level == logging.ERROR


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be 'text' or 'json', not 'xml'"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ],
)
def test_a_wrong_setting_is_refused_and_changes_nothing(monkeypatch, name, value, message):
    stream = io.StringIO()
    logs.configure("INFO", "text", stream)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        logs.configure()
    with pytest.raises(ConfigError, match=message):
        logs.dict_config()
    logging.getLogger("worker").info("still here")
    assert "still here" in stream.getvalue()


def test_configuring_again_replaces_the_handler():
    first, second = io.StringIO(), io.StringIO()
    logs.configure("INFO", "text", first)
    logs.configure("INFO", "json", second)
    logging.getLogger("worker").info("once")
    assert first.getvalue() == ""
    assert [json.loads(line)["message"] for line in second.getvalue().splitlines()] == ["once"]
    assert sum(isinstance(h, logs.Handler) for h in logging.getLogger().handlers) == 1


def test_gunicorn_lines_go_through_the_same_handler(capsys):
    access = logging.getLogger("gunicorn.access")
    access.addHandler(logging.StreamHandler())  # as gunicorn sets it up before the dict config
    access.propagate = False
    logging.config.dictConfig(logs.dict_config("INFO", "json"))
    access.info("%(h)s %(U)s", {"h": "127.0.0.1", "U": "/webhooks/wisphub", "q": "token=x"})
    logging.getLogger("gunicorn.error").info("Booting worker")
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["logger"], r["message"]) for r in records] == [
        ("gunicorn.access", "127.0.0.1 /webhooks/wisphub"),
        ("gunicorn.error", "Booting worker"),
    ]


def test_the_rq_worker_takes_over_rq_logging():
    rq_log = logging.getLogger("rq.worker")
    rq_log.addHandler(ColorizingStreamHandler())  # as `rq worker` sets it up
    rq_log.propagate = False
    rq_log.setLevel(logging.INFO)
    stream = io.StringIO()
    logs.configure("DEBUG", "json", stream)
    rqworker.take_over_rq_logging()
    rqworker.take_over_rq_logging()
    rq_log.debug("Worker %s: dequeued job %s from %s", "w1", "sync-3-ab", "queue")
    rq_log.debug(rqworker.RESULT_LINE, "w1", {"subscriberId": "Zoraida Quintero"})
    assert not rq_log.handlers
    assert rq_log.filters == [rqworker.without_result, rqworker.ROUTINE]
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "Worker w1: dequeued job sync-3-ab from queue"


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_rq_s_lines_about_polls_and_maintenance_are_debug(level):
    """Five INFO lines every POLL_INTERVAL, and each worker's registry cleaning every few
    seconds, drowned the rest at INFO."""
    rq_log = logging.getLogger("rq.worker")
    stream = io.StringIO()
    logs.configure(level, "json", stream)
    rqworker.take_over_rq_logging()
    poll = rqworker.POLL_DESCRIPTION
    rq_log.info("Worker %s: %s: %s (%s)", "w1", "queue", poll, "j1")
    rq_log.info("Worker %s: cleaning registries for queue: %s", "w1", "queue")
    rq_log.info("Worker %s: %s: %s (%s)", "w1", "queue", "sync client 7", "sync-7-ab")
    rq_log.warning("Worker %s: %s failed: %s", "w1", poll, "boom")
    shown = [(r["level"], r["message"]) for r in map(json.loads, stream.getvalue().splitlines())]
    routine = [
        ("DEBUG", f"Worker w1: queue: {poll} (j1)"),
        ("DEBUG", "Worker w1: cleaning registries for queue: queue"),
    ]
    assert shown == [
        *(routine if level == "DEBUG" else []),
        ("INFO", "Worker w1: queue: sync client 7 (sync-7-ab)"),
        ("WARNING", f"Worker w1: {poll} failed: boom"),
    ]


def test_a_client_job_names_its_client():
    connection = Redis()  # never used: the jobs are not saved
    sync = Job.create("worker.jobs.sync_client", args=(42,), connection=connection)
    reconcile = Job.create("worker.jobs.reconcile", kwargs={"dry_run": True}, connection=connection)
    assert queueing.client_of(sync) == 42
    assert queueing.client_of(reconcile) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw-1@10.0.0.5:6380/2", "redis://10.0.0.5:6380/2"),
        ("redis://10.0.0.5/0?password=pw-1", "redis://10.0.0.5:6379/0"),
        ("rediss://sync:pw-1@redis.example/1", "rediss://redis.example:6379/1"),
        ("unix:///run/redis.sock?db=3&password=pw-1", "unix:///run/redis.sock?db=3"),
        ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
    ],
)
def test_a_process_names_its_redis_without_the_password(url, shown):
    assert connection.address(Redis.from_url(url)) == shown  # no connection is made
