"""Address locks on a real Redis: all or nothing, widened without deadlock, taken back by the
same job's retry, and never held after the block."""

from __future__ import annotations

import threading
import time

import pytest

from worker.core.diff import Changes
from worker.core.model import Action, Kind, Operation
from worker.queue import store
from worker.queue.address_book import AddressesBusy, RedisAddressBook, hold_addresses
from worker.sync.apply import apply_changes
from worker.sync.engine import deletion_check

pytestmark = pytest.mark.integration

A, B = "10.80.0.1", "10.80.0.2"


@pytest.mark.slow
def test_two_jobs_widening_crosswise_both_go_ahead_one_after_the_other(redis):
    """Two jobs each hold the address the other one moves to (an IP swap): the one that cannot
    widen at once lets go and waits for both, so the other goes ahead; neither deadlocks."""
    results = {}
    second_holds_b = threading.Event()

    def first():
        with hold_addresses(redis, [A], "job-1") as lease:
            second_holds_b.wait(5)
            results["first widened at once"] = lease.widen([B])
            results["first holds"] = sorted(lease.keys)

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.1)
    with hold_addresses(redis, [B], "job-2") as lease:
        second_holds_b.set()
        time.sleep(0.2)  # the first job tries now, lets A go and waits
        results["second widened at once"] = lease.widen([A])
    thread.join(10)
    assert results == {
        "second widened at once": True,
        "first widened at once": False,
        "first holds": [f"wisphub-bqn-sync:lock:address:{ip}" for ip in (A, B)],
    }
    assert not redis.keys("wisphub-bqn-sync:lock:address:*"), "nothing held after the blocks"


def test_all_or_none_and_a_retry_takes_back_its_own_locks(redis):
    with hold_addresses(redis, [A], "job-1"):
        with pytest.raises(AddressesBusy), hold_addresses(redis, [A, B], "job-2", wait=0.2):
            pass
        assert not redis.exists(f"wisphub-bqn-sync:lock:address:{B}"), "none of them taken"
        with hold_addresses(redis, [A, B], "job-1", wait=0):  # the same job, run again
            pass


def test_a_reconcile_deletes_only_while_nobody_new_claims_the_address(redis):
    """A full reconcile confirms its deletions, then sends each one holding its address: one
    a job gave to a client since the confirmation is held back."""
    book = RedisAddressBook(redis, "reconcile-1", wait=0.2)
    check = deletion_check(book, {A: (5,)})  # client 5 was read again: it left A
    delete_a, delete_b = (Operation(Action.DELETE, Kind.SUBSCRIBER, ip) for ip in (A, B))
    with redis.pipeline() as pipe:
        store.save_claims(pipe, [A, B], {A: (5,), B: (7,)})  # a job recorded 7 at B meanwhile
        pipe.execute()
    with check(delete_a) as allowed:
        assert allowed
        assert redis.exists(f"wisphub-bqn-sync:lock:address:{A}"), "sent holding the address"
    with check(delete_b) as allowed:
        assert not allowed
    with hold_addresses(redis, [A], "job-9"), check(delete_a) as allowed:
        assert not allowed, "an address another job holds for good is left for the next pass"


def test_a_deletion_held_back_is_neither_sent_nor_a_failure(redis, bqn_sim, bqn_client):
    """Applied through the BQN client: fails if the held deletion reaches the BQN, or is
    counted as a failed write (a reconcile then failed with no error to show)."""
    for ip in (A, B):
        bqn_sim.add_rest_subscriber(ip, f"c-{ip}", "Online_basico")
    book = RedisAddressBook(redis, "reconcile-1", wait=0.2)
    with redis.pipeline() as pipe:
        store.save_claims(pipe, [A, B], {A: (5,), B: (7,)})  # a job recorded 7 at B meanwhile
        pipe.execute()
    deletes = tuple(Operation(Action.DELETE, Kind.SUBSCRIBER, ip) for ip in (A, B))
    report = apply_changes(
        Changes(deletes), bqn_client, check_deletion=deletion_check(book, {A: (5,)})
    )
    assert (report.failures, [op.key for op in report.planned]) == ([], [A])
    held = bqn_sim.subscribers()
    assert (A in held, B in held) == (False, True)
