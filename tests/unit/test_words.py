"""Jobs and their errors in words (`worker.core.words`), as the failures list shows them."""

import traceback

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.core.errors import ConfigError
from worker.core.targets import DEFAULT_TARGET, address_key, split_address_key
from worker.core.words import error_in_words, job_facts, say_job


def raised(error: BaseException) -> str:
    """The traceback RQ keeps for a job that raised `error`."""
    try:
        raise error
    except BaseException:
        return traceback.format_exc()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # the service's own errors: the message alone
        (
            raised(ConfigError("BQN answered 401: check BQN_USER")),
            "BQN answered 401: check BQN_USER",
        ),
        (
            "worker.queue.lifecycle.RetriesSpent: still failing after 3 retries: BQN answered 503",
            "still failing after 3 retries: BQN answered 503",
        ),
        ("worker.queue.lifecycle.OperationsFailed", "OperationsFailed"),
        # anything else keeps its class's name, without its module
        (raised(KeyError("x")), "KeyError: 'x'"),
        (
            "rq.timeouts.JobTimeoutException: Task exceeded maximum timeout value (596 seconds)",
            "JobTimeoutException: Task exceeded maximum timeout value (596 seconds)",
        ),
        (
            "redis.exceptions.ConnectionError: Error 111 connecting to 10.0.0.5:6379.",
            "ConnectionError: Error 111 connecting to 10.0.0.5:6379.",
        ),
        # a message of several lines is one line
        (
            'worker.core.errors.ApiError: BQN answered 400:\n{"error": "bad"}',
            'BQN answered 400: {"error": "bad"}',
        ),
        # what RQ writes itself, and a transient error kept by the job: messages already
        ("Job was stuck in intermediate queue.", "Job was stuck in intermediate queue."),
        ("BQN answered 503: busy", "BQN answered 503: busy"),
        ("failed", "failed"),
        ("", ""),
    ],
)
def test_an_error_in_words(text, words):
    assert error_in_words(text) == words


@given(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1))
def test_an_own_errors_message_comes_out_whole(message):
    message = message.strip() or "x"
    text = raised(ConfigError(message))
    assert error_in_words(text) == message


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "clients", "words"),
    [
        ("sync_client", (123,), {}, None, "sync of client 123"),
        ("sync_clients", ([1, 2, 3],), {}, None, "batch of 3 clients"),
        ("sync_clients", ([1, 2, 3],), {}, 1, "batch of 1 client"),
        ("sync_address", ("10.0.0.9",), {}, None, "sync of address 10.0.0.9"),
        ("sync_address", ("10.0.0.9@core-b",), {}, None, "sync of address 10.0.0.9 on core-b"),
        ("reconcile", (), {"dry_run": False}, None, "full reconcile"),
        (
            "reconcile",
            (),
            {"dry_run": True, "target": "north"},
            None,
            "full reconcile of north (dry run)",
        ),
        ("reconcile", (), {"force": True}, None, "full reconcile (forced)"),
        ("sync_plans", (), {}, None, "plan sync"),
        ("poll_changes", (), {}, None, "change poll"),
        ("some_new_job", (), {}, None, "some new job"),
    ],
)
def test_a_job_in_words(name, args, kwargs, clients, words):
    assert say_job(job_facts(name, args, kwargs, clients)) == words


@pytest.mark.parametrize("target", [DEFAULT_TARGET, "core-b"])
def test_an_address_jobs_key_reads_back_as_it_was_made(target):
    """Fails if the key an address job is queued with (`address_key`) and the way it is read
    back (`split_address_key`, and the failures list's words) part ways."""
    key = address_key("10.0.0.9", target)
    assert split_address_key(key) == ("10.0.0.9", target)
    facts = job_facts("sync_address", (key,), {})
    assert (facts["ip"], facts["target"]) == (
        "10.0.0.9",
        None if target == DEFAULT_TARGET else target,
    )
