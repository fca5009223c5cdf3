"""`/metrics`: parses with the Prometheus client library's parser, and its counters move as the
service works, in one process and under gunicorn with several workers (multiprocess mode)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from sandbox.demo import ROOT
from sandbox.processes import Processes
from tests.integration.conftest import API, HOOK, managed_state
from tests.integration.processes import eventually
from tests.rows import row
from worker.queue import metrics, queueing

pytestmark = pytest.mark.integration

PREFIX = "wisphub_bqn_sync_"
# Requests of each kind a stranger sends with a method and a path of its own.
BOGUS = 50
# `make test` puts Debian's promtool in .venv/tools when it can
PROMTOOL = shutil.which("promtool") or shutil.which("promtool", path=str(ROOT / ".venv" / "tools"))


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample by name and labels; fails if the text does not parse."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def lookup(found, name: str, **labels: str) -> float | None:
    """The sample of `name` with exactly `labels`; None when there is no such series."""
    return found.get((PREFIX + name, frozenset(labels.items())))


def value(found, name: str, **labels: str) -> float:
    """The sample of `name` with exactly `labels`, which must be there."""
    sample = lookup(found, name, **labels)
    assert sample is not None, f"no series {name} {labels}"
    return sample


def total(found, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == PREFIX + name and wanted <= ls)


def scrape(web) -> dict:
    response = web.get("/metrics", headers=API)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return samples(response.get_data(as_text=True))


@pytest.mark.slow
def test_counters_move_as_the_service_works(web, work, wisphub_sim, queue):
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1", "Activo", "Online_basico", "José"))
    before = scrape(web)
    web.post("/webhooks/wisphub", json={"id_servicio": 1}, headers=HOOK)
    web.post("/webhooks/wisphub", json={"id_servicio": 1}, headers=HOOK)  # coalesced
    web.post("/webhooks/wisphub", json={"id_servicio": 1})  # no secret
    web.post("/webhooks/wisphub", json={"id_servicio": "x"}, headers=HOOK)  # not an id
    waiting = scrape(web)
    assert value(waiting, "queue_depth") == 1
    assert 0 <= value(waiting, "queue_oldest_job_age_seconds") < 60
    work()
    after = scrape(web)

    def moved(name, **labels):
        # a counter has no series until it first counts: missing before means it was at 0
        earlier = lookup(before, name, **labels)
        return value(after, name, **labels) - (0.0 if earlier is None else earlier)

    assert moved("notifications_total", outcome="accepted") == 2
    assert moved("notifications_total", outcome="unauthorized") == 1
    assert moved("notifications_total", outcome="invalid") == 1
    assert moved("client_syncs_requested_total", via="webhook", outcome="queued") == 1
    assert moved("client_syncs_requested_total", via="webhook", outcome="coalesced") == 1
    assert moved("jobs_total", job="sync_client", outcome="succeeded") == 1
    assert (
        moved(
            "bqn_operations_total",
            kind="subscriber",
            action="create",
            result="ok",
            target="default",
        )
        == 1
    )
    wisphub_reads = total(after, "upstream_requests_total", service="wisphub") - total(
        before, "upstream_requests_total", service="wisphub"
    )
    assert wisphub_reads >= 1
    assert (
        total(after, "upstream_request_duration_seconds_count", service="bqn")
        - total(before, "upstream_request_duration_seconds_count", service="bqn")
        >= 2  # the subscriber read and its write
    )
    buckets = Counter(
        dict(labels)["operation"]
        for name, labels in after
        if name == PREFIX + "upstream_request_duration_seconds_bucket"
    )
    assert set(buckets.values()) == {len(metrics.BUCKETS) + 1}  # every bucket, and +Inf
    assert value(after, "queue_depth") == 0
    assert value(after, "failed_jobs") == 0
    webhook_requests = total(
        after, "http_request_duration_seconds_count", endpoint="/webhooks/wisphub"
    ) - total(before, "http_request_duration_seconds_count", endpoint="/webhooks/wisphub")
    assert webhook_requests == 4


@pytest.mark.slow
def test_reconcile_poll_and_guard_figures(web, work, wisphub_sim, bqn_sim, queue, redis):
    wisphub_sim.load(20)
    queueing.enqueue_reconcile(queue, dry_run=False)
    work()
    found = scrape(web)
    assert value(found, "last_reconcile_ok") == 1
    assert time.time() - 60 < value(found, "last_reconcile_timestamp_seconds") <= time.time()
    assert value(found, "last_reconcile_counts", outcome="created") == len(managed_state(bqn_sim))
    assert lookup(found, "deletion_guard_trips_total", where="reconcile") is None  # no trip yet
    wisphub_sim.state.faults.update(hide_rows=0.9)  # WispHub "loses" most clients
    queueing.enqueue_reconcile(queue, dry_run=False)
    work()
    found = scrape(web)
    assert value(found, "deletion_guard_trips_total", where="reconcile") == 1
    assert value(found, "last_reconcile_ok") == 0
    assert value(found, "failed_jobs") == 1


def test_promtool_accepts_the_exposition(web, work, wisphub_sim):
    if PROMTOOL is None:
        pytest.skip("no promtool (make ci-tools fetches it from Debian's prometheus package)")
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1", "Activo", "Online_basico", "José"))
    web.post("/webhooks/wisphub", json={"id_servicio": 1}, headers=HOOK)
    work()
    text = web.get("/metrics", headers=API).get_data(as_text=True)
    assert "wisphub_bqn_sync_upstream_request_duration_seconds_bucket" in text
    check = subprocess.run(
        [PROMTOOL, "check", "metrics"], check=False, input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_strangers_cannot_add_series(web):
    """Any uppercase word is a method to gunicorn and any path reaches the app: neither may
    make a new series, or each scrape (and the multiprocess folder) grows without bound."""
    for method, path in (("GET", "/healthz"), ("BOGUS", "/healthz"), ("BOGUS", "/nowhere")):
        web.open(path, method=method)
    web.get("/nowhere")
    scrape(web)  # its own series appears from the second scrape on
    before = scrape(web)
    for number in range(BOGUS):
        assert web.open("/healthz", method=f"BOGUS{number}").status_code == 405
        assert web.open(f"/nowhere/{number}", method=f"X{number}").status_code == 404
        assert web.get(f"/nowhere/{number}").status_code == 404
    after = scrape(web)
    assert len(after) == len(before), sorted(set(after) - set(before))[:5]
    labels = {"endpoint": "unmatched", "method": "other", "status": "405"}
    counted = value(after, "http_request_duration_seconds_count", **labels)
    assert counted - value(before, "http_request_duration_seconds_count", **labels) == BOGUS


def test_metrics_need_the_api_token(web):
    assert web.get("/metrics").status_code == 401
    assert web.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.slow
def test_several_gunicorn_workers_add_up(service_env, redis, wisphub_sim, bqn_sim):
    for number in range(1, 11):
        wisphub_sim.state.upsert_client(row(number, f"10.2.0.{number}", nombre=f"c{number}"))
    env = {**service_env, "POLL_INTERVAL": "0", "WORKER_PROCESSES": "2"}
    processes = Processes(env, ["web", "worker"], web_workers=3)
    try:
        eventually(processes.ready, "the web process to be ready")
        session = requests.Session()
        for number in range(1, 11):
            response = session.post(
                f"{processes.url}/webhooks/wisphub",
                json={"id_servicio": number},
                headers=HOOK,
                timeout=5,
            )
            assert response.status_code == 202
        eventually(lambda: len(managed_state(bqn_sim)) == 10, "the ten clients on the BQN")
        text = session.get(f"{processes.url}/metrics", headers=API, timeout=5).text
        found = samples(text)
        assert value(found, "notifications_total", outcome="accepted") == 10
        eventually(
            lambda: (
                lookup(
                    samples(session.get(f"{processes.url}/metrics", headers=API, timeout=5).text),
                    "jobs_total",
                    job="sync_client",
                    outcome="succeeded",
                )
                == 10
            ),
            "the workers' job counts",
        )
        assert value(found, "workers") == 2  # the worker command's processes
    finally:
        processes.stop()
