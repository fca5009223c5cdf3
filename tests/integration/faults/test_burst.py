"""A burst of 10,000 notifications over 200 clients through the Procfile's processes: every
client converges, and the queue never holds more than one waiting job per client."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from redis import Redis
from rq import Queue
from rq.job import Job

from tests.integration.conftest import HOOK
from tests.integration.faults.conftest import assert_converged, churn
from tests.integration.processes import Processes, eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

NOTIFICATIONS = 10_000
CLIENTS = 200
SENDERS = 4
JOB_CLIENT = re.compile(r"^sync-(\d+)-")


class QueueWatch(threading.Thread):
    """Samples the queue while the burst runs: the most waiting jobs seen for one client."""

    def __init__(self, queue: Queue) -> None:
        super().__init__(daemon=True)
        self.queue = queue
        self.most = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            waiting = Counter(
                match.group(1)
                for job_id in self.queue.get_job_ids()
                if (match := JOB_CLIENT.match(job_id))
            )
            self.most = max(self.most, *waiting.values(), 0)
            self.samples += 1
            self.done.wait(0.01)


@pytest.mark.timeout(400)
def test_a_burst_of_notifications_converges_one_waiting_job_per_client(
    service_env, baseline, queue, redis, wisphub_sim, bqn_sim
):
    ids = baseline(CLIENTS)
    env = {**service_env, "POLL_INTERVAL": "0", "PLAN_REFRESH_INTERVAL": "0"}
    processes = Processes({**env, "RECONCILE_ON_START": "0"}, ["web", "worker"])
    second = Processes(env, ["worker"])  # two workers, as a deployment would scale them
    watch = QueueWatch(Queue(queue.name, connection=Redis.from_url(service_env["REDIS_URL"])))
    try:
        eventually(processes.ready, "the web process")
        watch.start()
        rng = random.Random(5)
        order = [rng.choice(ids) for _ in range(NOTIFICATIONS)]
        accepted: set[str] = set()
        lock = threading.Lock()
        local = threading.local()

        def send(id_servicio: int) -> None:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            response = session.post(
                f"{processes.url}/webhooks/wisphub",
                json={"id_servicio": id_servicio},
                headers=HOOK,
                timeout=10,
            )
            assert response.status_code == 202, response.text
            with lock:
                accepted.add(response.json()["jobs"][0]["job_id"])

        started = time.monotonic()
        with ThreadPoolExecutor(SENDERS) as pool:
            for start in range(0, NOTIFICATIONS, 1000):
                churn(wisphub_sim, rng.sample(ids, 20), seed=start)  # WispHub keeps changing
                list(pool.map(send, order[start : start + 1000]))

        sent = time.monotonic()

        def settled() -> bool:
            processes.check_alive()
            jobs = Job.fetch_many(sorted(accepted), connection=redis)
            return all(job is not None and job.get_status() == "finished" for job in jobs)

        eventually(settled, "every accepted job to finish")
        print(f"sent in {sent - started:.1f} s, all applied {time.monotonic() - sent:.1f} s later")
    finally:
        watch.done.set()
        second.stop()
        processes.stop()
    print(f"{len(accepted)} jobs for {NOTIFICATIONS} notifications; {watch.samples} samples")
    assert watch.samples > 10
    assert watch.most <= 1, "at most one waiting job per client"
    assert len(accepted) < NOTIFICATIONS, "notifications for a waiting client were coalesced"
    assert_converged(wisphub_sim, bqn_sim)
