"""Times on the status page in the ISP's zone (`TZ`), the zone said; in the API, ISO 8601 with
an offset (issue 17). Real Redis, real RQ workers and the HTTPS simulators."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from service.app import create_app
from tests.integration.conftest import API, english, notify
from tests.integration.test_search import poll
from tests.rows import row
from worker.queue import queueing

pytestmark = pytest.mark.integration

BOGOTA = ZoneInfo("America/Bogota")  # UTC-5 all year


@pytest.fixture
def in_bogota(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process in `TZ=America/Bogota`, as a web process started with it."""
    monkeypatch.setenv("TZ", "America/Bogota")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_pages_show_times_in_the_isp_zone(service_env, redis, work, wisphub_sim, in_bogota):
    """Fails if a time shows in UTC (five hours off in Bogotá), or the zone is not said."""
    web = english(create_app({**service_env, "TZ": "America/Bogota"}).test_client())
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1", nombre="Ana"))
    notify(web, 1)
    work()
    html = web.get("/clients/1", headers=API).get_data(as_text=True)
    assert "<th>When (America/Bogota (-05))</th>" in html
    stamps = re.findall(r'<td title="([^"]+)">([^<]+)<br>', html)
    assert stamps
    for iso, shown in stamps:
        moment = datetime.fromisoformat(iso)
        assert shown == moment.astimezone(BOGOTA).strftime("%Y-%m-%d %H:%M:%S -05")
    overview = web.get("/", headers=API).get_data(as_text=True)
    assert "Times in America/Bogota (-05)." in overview


def offsets_missing(value: object, where: str = "") -> Iterator[str]:
    """Where, in a JSON answer, a time is written without an offset."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from offsets_missing(item, f"{where}.{key}")
    elif isinstance(value, list):
        for at, item in enumerate(value):
            yield from offsets_missing(item, f"{where}[{at}]")
    elif (
        isinstance(value, str)
        and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d.*", value)
        and datetime.fromisoformat(value).utcoffset() is None
    ):
        yield f"{where}: {value}"


def test_api_times_carry_an_offset(web, work, wisphub_sim, bqn_sim, queue, redis):
    """Every time the API answers (a job, a history, a failure, a reconcile, a pause, the
    search's pass, the targets' breakers) is ISO 8601 with its offset: fails on a naive one."""
    wisphub_sim.state.upsert_client(row(1, "10.1.0.1", nombre="Ana"))
    wisphub_sim.state.upsert_client(row(2, "10.1.0.2", nombre="Leo"))
    poll(queue, redis, work)
    bqn_sim.state.faults.update(fail_every=1, fail_status=400, writes_only=True)
    wisphub_sim.state.update_client(2, estado="Suspendido")
    [job_id] = notify(web, 2)
    work()
    bqn_sim.state.faults.clear()
    queueing.enqueue_reconcile(queue, dry_run=False)
    work()
    web.post("/api/v1/pause", headers=API, json={"reason": "maintenance"})
    answers = {
        path: web.get(path, headers=API).json
        for path in (
            f"/api/v1/jobs/{job_id}",
            "/api/v1/clients/2/history",
            "/api/v1/failures",
            "/api/v1/reconciles",
            "/api/v1/pause",
            "/api/v1/clients?q=ana",
            "/api/v1/targets",
        )
    }
    seen = [path for path, answer in answers.items() if re.search(r"\d\dT\d\d", str(answer))]
    assert len(seen) == len(answers), "an answer without any time proves nothing"
    naive = [where for path, answer in answers.items() for where in offsets_missing(answer, path)]
    assert naive == []
