"""The Procfile's processes as child processes of a test, and waiting for what they do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from sandbox.demo import procfile
from sandbox.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 60


def eventually(check: Callable[[], bool], what: str) -> float:
    """Wait until `check()` holds; return the seconds it took (no speed is asserted here)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > WAIT_SECONDS:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


class Processes:
    """The Procfile's processes, started with one environment."""

    def __init__(self, env: dict[str, str], names: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **env,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "1",
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        }
        commands = procfile()
        self.children = {
            name: subprocess.Popen(
                ["bash", "-c", f"exec {commands[name]}"],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            for name in names
        }

    def ready(self) -> bool:
        self.check_alive()
        try:
            return requests.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # still starting
            return False

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                raise AssertionError(f"{name} exited: {child.stderr.read().decode()[-2000:]}")

    def kill(self, name: str) -> None:
        """Kill one process and its children at once (SIGKILL), as the OOM killer would."""
        child = self.children.pop(name)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def start(env: dict[str, str]) -> Processes:
    processes = Processes(env, ["web", "worker", "scheduler"])
    try:
        eventually(processes.ready, "the web process to be ready")
    except AssertionError:
        processes.stop()
        raise
    return processes
