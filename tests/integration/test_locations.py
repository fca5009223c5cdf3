"""Location groups (issue 18, item 1) with real workers, a real Redis and the simulators: each
live client's address in its zona's and its router's group after a reconcile of 2,000 clients,
a client moving router moved by the next poll (no notification), the BQN's groups-per-address
limit respected and what did not fit reported, a group the sync did not create left alone."""

from __future__ import annotations

from collections import defaultdict

import pytest
from rq.job import Job

from tests.integration.conftest import API, managed_state
from tests.rows import row
from worker.queue import queueing, runtime, store

pytestmark = pytest.mark.integration

SETTINGS = {"LOCATION_GROUPS": "zona,router"}


def configure(monkeypatch, bqn_sim, per_ip: int = 3, **env: str) -> None:
    """The workers' settings (read once per process), and the BQN's limit, as older releases."""
    for name, value in {**SETTINGS, "BQN_GROUPS_PER_IP": str(per_ip), **env}.items():
        monkeypatch.setenv(name, value)
    runtime.runtime.cache_clear()
    bqn_sim.state.groups_per_ip = per_ip


def location_groups(bqn_sim) -> dict[str, set[str]]:
    """The BQN's Z- and R- groups and their members."""
    return {
        item["subscriberGroupName"]: set(item["subscriberMembers"])
        for item in bqn_sim.state.snapshot()["groups"]
        if item["subscriberGroupName"][:2] in ("Z-", "R-")
    }


def expected(wisphub_sim, bqn_sim) -> dict[str, set[str]]:
    """What the groups should hold, worked out here: the addresses the BQN holds for each
    client (its subscribers, named by id_servicio, and its own multi-IP group), which other
    tests hold equal to WispHub, by the zona and the router of the client."""
    at: dict[str, set[str]] = defaultdict(set)
    for ip, (subscriber_id, _) in managed_state(bqn_sim).items():
        at[subscriber_id].add(ip)
    for item in bqn_sim.state.snapshot()["groups"]:
        if item["subscriberGroupName"].startswith("wisphub-"):
            at[item["subscriberGroupName"].removeprefix("wisphub-")] |= set(
                item["subscriberMembers"]
            )
    rows = {str(r["id_servicio"]): r for r in wisphub_sim.rows()}
    groups: dict[str, set[str]] = defaultdict(set)
    for key, ips in at.items():
        for prefix, field in (("Z-", "zona"), ("R-", "router")):
            groups[prefix + rows[key][field]["nombre"].replace(" ", "_")] |= ips
    return dict(groups)


def run(queue, work, kind, **kwargs) -> dict:
    job = queue.enqueue(kind.path, **kwargs)
    work()
    return Job.fetch(job.id, connection=queue.connection).return_value()


@pytest.mark.slow
def test_a_reconcile_then_the_poller_keep_every_client_in_its_groups(
    web, work, wisphub_sim, bqn_sim, queue, redis, monkeypatch
):
    """Fails if a live client's address is missing from its zona's or router's group, or is in
    another; if the limit is passed (the simulator answers 409, as older releases do); if a
    client moving router stays in the old group after the next poll."""
    # one poll in 1,000 compares with the BQN: the first; the others go by what they wrote
    configure(monkeypatch, bqn_sim, SUBSCRIBER_ID_FIELD="id_servicio", POLL_BQN_EVERY="1000")
    rows = wisphub_sim.load(2000)
    result = run(queue, work, queueing.RECONCILE, dry_run=False, force=False)
    assert result["ok"], result
    groups = location_groups(bqn_sim)
    assert groups == expected(wisphub_sim, bqn_sim)
    assert "Z-San_José" in groups  # names as WispHub writes them, spaces as _
    assert "R-Torre_San_José" in groups
    assert len(groups) == 10

    redis.set(store.SNAPSHOT_TAKEN, 0)
    first = run(queue, work, queueing.POLL_CHANGES)  # compares: finds what the reconcile wrote
    assert (first["locations"]["groups"], first["locations"]["written"]) == (10, 0)

    mover = next(r for r in rows if r["estado"] == "Activo" and r["ip"] in groups["R-Nodo_Centro"])
    ip = mover["ip"]
    moved = {**mover, "router": {"id": 64188, "nombre": "OLT Fibra Norte"}}
    wisphub_sim.state.upsert_client(moved)  # unannounced: only the poller can see it
    redis.set(store.SNAPSHOT_TAKEN, 0)
    poll = run(queue, work, queueing.POLL_CHANGES)
    assert poll["locations"]["written"] == 2, poll["locations"]
    groups = location_groups(bqn_sim)
    assert ip not in groups["R-Nodo_Centro"]
    assert ip in groups["R-OLT_Fibra_Norte"]
    assert groups == expected(wisphub_sim, bqn_sim)
    page = web.get("/", headers=API).get_data(as_text=True)
    assert "Location groups: 10 on the BQN; 2 written by this poll." in page
    redis.set(store.SNAPSHOT_TAKEN, 0)
    again = run(queue, work, queueing.POLL_CHANGES)  # the same pass: nothing worked out again
    assert again["locations"] == {"unchanged": True, "most": 3}


def test_what_does_not_fit_is_reported_not_written_and_a_hand_made_group_is_left_alone(
    work, wisphub_sim, bqn_sim, queue, monkeypatch
):
    """Two groups per address: a client with several addresses has its own group and its
    zona's, not its router's; a group named as one of ours, made by hand, is not touched."""
    configure(monkeypatch, bqn_sim, per_ip=2)
    places = {"zona": {"id": 1, "nombre": "Norte"}, "router": {"id": 2, "nombre": "Torre 1"}}
    wisphub_sim.state.upsert_client(row(191, "10.19.0.1", **places))
    wisphub_sim.state.upsert_client(row(192, "10.19.0.2, 10.19.0.3", **places))
    with bqn_sim.state.lock:
        bqn_sim.state.groups["R-Torre_1"] = {
            "subscriberGroupName": "R-Torre_1",
            "subscriberMembers": ["10.99.0.1"],
            "subscriberRanges": [],
        }
    result = run(queue, work, queueing.RECONCILE, dry_run=False, force=False)
    assert result["ok"], result
    assert location_groups(bqn_sim) == {
        "Z-Norte": {"10.19.0.1", "10.19.0.2", "10.19.0.3"},
        "R-Torre_1": {"10.99.0.1"},  # as its maker left it
    }
    notes = result["notes"]
    assert any("1 clients were left out of their router location group" in n for n in notes)
    assert any("location group R-Torre_1 exists and the sync did not create it" in n for n in notes)

    dry = {"LOCATION_GROUPS": "router"}
    configure(monkeypatch, bqn_sim, per_ip=2, **dry)
    run(queue, work, queueing.RECONCILE, dry_run=True, force=False)
    assert "Z-Norte" in location_groups(bqn_sim)  # a dry run removes nothing
