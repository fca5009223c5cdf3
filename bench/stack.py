"""What the benchmarks share: the simulators as separate processes, their control endpoints,
running a command while measuring its wall time and peak memory, and printing a table."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from sandbox.processes import Processes
from sandbox.redis_server import RedisServer, free_port
from sandbox.sentinel import RedisHA

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
API_KEY = "bench-key"
BQN_USER, BQN_PASSWORD = "bench", "bench-password"
START_SECONDS = 120


@dataclass
class Simulator:
    """A simulator process on 127.0.0.1, spoken to over HTTPS with its own CA."""

    process: subprocess.Popen[bytes]
    url: str
    ca: Path

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(
            method, f"{self.url}/_sim/{path}", verify=str(self.ca), timeout=60, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def latency(self, ms: int) -> None:
        """Add `ms` milliseconds to every API request."""
        self.control("PUT", "faults", json={"latency_ms": ms})

    def reset_stats(self) -> None:
        self.control("POST", "stats/reset")

    def requests_served(self) -> int:
        return int(self.control("GET", "stats")["total"])

    def cpu_seconds(self) -> float:
        """The CPU time (user and system) the simulator's process has used, from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(sims: Sequence[Simulator], before: Sequence[float], seconds: float) -> str:
    """The share of the machine's CPU the simulators used over `seconds`, since `before`
    (their `cpu_seconds` then)."""
    used = sum(sim.cpu_seconds() - start for sim, start in zip(sims, before, strict=True))
    return f"{100 * used / (seconds * (os.cpu_count() or 1)):.0f} %"


@contextmanager
def simulator(api: str, *args: str) -> Iterator[Simulator]:
    """Serve `wisphub` or `bqn` (with `args`) in a child process until the block ends."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{api}-") as tls_dir:
        port = free_port()
        process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "sandbox",
                api,
                "--port",
                str(port),
                "--tls-dir",
                tls_dir,
                "--quiet",
                *args,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sim = Simulator(process, f"https://127.0.0.1:{port}", Path(tls_dir) / "ca.pem")
        try:
            _wait_until_up(sim)
            yield sim
        finally:
            process.terminate()
            process.wait(timeout=30)


def wisphub(clients: int) -> Any:
    """The WispHub simulator with `clients` seeded clients."""
    return simulator("wisphub", "--clients", str(clients), "--api-key", API_KEY)


def bqn() -> Any:
    """A BQN simulator in its seeded start state."""
    return simulator("bqn", "--user", BQN_USER, "--password", BQN_PASSWORD)


def _wait_until_up(sim: Simulator) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if sim.process.poll() is not None:
            raise RuntimeError(f"simulator {sim.url} exited with {sim.process.returncode}")
        try:
            sim.control("GET", "stats")
            return
        except (requests.ConnectionError, FileNotFoundError, OSError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"simulator {sim.url} did not start") from None
            time.sleep(0.2)


def sync_env(wisphub_sim: Simulator, bqn_sim: Simulator) -> dict[str, str]:
    """The environment that points the sync at the two simulators."""
    return {
        **os.environ,
        "WISPHUB_URL": wisphub_sim.url,
        "WISPHUB_API_KEY": API_KEY,
        "WISPHUB_CA_BUNDLE": str(wisphub_sim.ca),
        "WISPHUB_PAGE_SIZE": "1000",
        "BQN_URL": bqn_sim.url,
        "BQN_USER": BQN_USER,
        "BQN_PASSWORD": BQN_PASSWORD,
    }


@dataclass(frozen=True)
class Measured:
    """A finished command: wall seconds, peak resident memory, exit status, output, and the
    CPU seconds (user and system) it used."""

    seconds: float
    peak_mb: float
    code: int
    out: str
    cpu_seconds: float = 0.0


def measure(command: Sequence[str], env: dict[str, str]) -> Measured:
    """Run `command` and measure it (peak memory from the kernel's rusage of that child)."""
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        process = subprocess.Popen(
            list(command), cwd=ROOT, env=env, stdout=out, stderr=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return Measured(
            seconds,
            usage.ru_maxrss / 1024,
            process.returncode,
            out.read().decode(),
            usage.ru_utime + usage.ru_stime,
        )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> str:
    """One line about where a benchmark ran."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"


@contextmanager
def redis_server() -> Iterator[str]:
    """A private Redis server (no persistence) for one benchmark; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        server = RedisServer(Path(directory))
        try:
            yield server.url
        finally:
            server.stop()


@contextmanager
def redis_ha() -> Iterator[RedisHA]:
    """A private Redis master, its replica and three sentinels (no persistence) for one
    benchmark, as the failover tests start them."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-redis-ha-") as directory,
        RedisHA(Path(directory)) as ha,
    ):
        yield ha


@contextmanager
def service(env: dict[str, str], *, workers: int, web_workers: int = 2) -> Iterator[str]:
    """The Procfile's web process and `workers` worker processes; yields the web URL."""
    quiet = {"POLL_INTERVAL": "0", "PLAN_REFRESH_INTERVAL": "0", "RECONCILE_ON_START": "0"}
    processes = Processes({**env, **quiet}, ["web"] + ["worker"] * workers, web_workers=web_workers)
    probe = "/readyz" if workers else "/healthz"  # ready means a worker is up too
    try:
        deadline = time.monotonic() + START_SECONDS
        while not processes.ready(probe):
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.2)
        yield processes.url
    finally:
        processes.stop()


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which `share` (0-1) of `values` lie (nearest rank)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]
