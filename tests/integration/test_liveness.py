"""Locks kept alive while their job runs (issue 20, item 3), on a real Redis: renewed past
their TTL while the holder lives, gone within the TTL once it stops renewing them."""

from __future__ import annotations

import time

import pytest

from worker.queue import liveness, store

pytestmark = pytest.mark.integration


def test_a_lock_lives_while_kept_alive_and_lets_go_soon_after(redis):
    """Fails if the lock or the key beside it expire while their holder still runs, or if
    they outlive it by more than their TTL (a dead reconcile held its lock for three hours)."""
    lock = store.singleton_lock(redis, "liveness-test", 1)
    marker = f"{store.PREFIX}liveness-test:marker"
    assert store.take(lock, "job-1")
    redis.set(marker, 1, ex=1)
    with liveness.kept_alive(lock, marker, every=0.2):
        time.sleep(1.6)  # past the TTL: renewed meanwhile
        assert redis.get(lock.name) == b"job-1"
        assert redis.exists(marker)
    # the holder stops without letting go, as a killed worker would
    assert 0 < redis.pttl(lock.name) <= 1000
    time.sleep(1.2)
    assert redis.get(lock.name) is None
    assert not redis.exists(marker)


def test_a_lock_taken_over_is_no_longer_renewed(redis, caplog):
    lock = store.singleton_lock(redis, "liveness-lost", 1)
    assert store.take(lock, "job-1")
    with liveness.kept_alive(lock, every=0.1):
        redis.set(lock.name, b"job-2", px=5000)  # expired and taken by another meanwhile
        time.sleep(0.4)
    assert redis.get(lock.name) == b"job-2"  # the other's lock is left as it is
    assert "was lost: it is no longer renewed" in caplog.text


def test_letting_go_of_a_lock_lost_meanwhile_is_not_an_error(redis, caplog):
    """A reconcile whose lock expired while Redis stalled has still done its work: fails if
    letting go raises (RQ would run the whole reconcile again)."""
    lock = store.singleton_lock(redis, "liveness-release", 1)
    assert store.take(lock, "job-1")
    redis.set(lock.name, b"job-2")  # expired and taken by another meanwhile
    liveness.release(lock)
    assert redis.get(lock.name) == b"job-2"
    assert "was lost before its holder let go of it" in caplog.text


def test_a_job_s_locks_live_while_its_heartbeat_renews_them_and_lapse_after(redis):
    """Issue 20, item 6 (and a failover's jobs in flight): a client lock held by a job whose
    worker died stayed for the job's whole timeout (11 min), and each of that client's next
    jobs waited for it. Fails if a job's locks are not renewed by its heartbeat, or outlive it
    by more than their short TTL."""
    assert store.take_client_locks(redis, [7, 8], "job-1", seconds=1) == [7, 8]
    keys = [store.client_lock_key(key) for key in (7, 8)]
    for _ in range(4):  # beats past the TTL
        time.sleep(0.4)
        liveness.renew(redis, "job-1", seconds=1)
    assert [redis.get(key) for key in keys] == [b"job-1", b"job-1"]
    store.release_locks(redis, keys[:1], "job-1")
    redis.set(keys[1], b"job-1", px=1000)
    time.sleep(1.2)  # the holder beats no more (it died): its last lock lapses
    assert [redis.get(key) for key in keys] == [None, None]
    liveness.renew(redis, "job-1", seconds=1)  # a late beat takes nothing back
    assert redis.get(keys[1]) is None
