"""The Procfile's processes as children of a test or benchmark: started with one environment,
checked, killed or stopped together."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

from sandbox.demo import ROOT, procfile
from sandbox.redis_server import free_port

STOP_SECONDS = 20
BASH = shutil.which("bash") or "/bin/bash"


@dataclass(frozen=True)
class Child:
    """One started process, and the file its standard error goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path


class Processes:
    """Procfile processes by name (a name may repeat: `["web", "worker", "worker"]`), the web
    one on a free port with `web_workers` gunicorn workers."""

    def __init__(self, env: dict[str, str], names: list[str], *, web_workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **env,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(web_workers),
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        }
        commands = procfile()
        self.logs = tempfile.TemporaryDirectory(prefix="procfile-")
        self.children: list[Child] = []
        for number, name in enumerate(names):
            log = Path(self.logs.name) / f"{number}-{name}.log"
            with log.open("wb") as errors:  # the child keeps its own copy of the file
                process = subprocess.Popen(
                    [BASH, "-c", f"exec {commands[name]}"],
                    cwd=ROOT,
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    start_new_session=True,
                )
            self.children.append(Child(name, process, log))

    def ready(self, path: str = "/readyz") -> bool:
        """Whether the web process answers 200 at `path` (`/readyz`: a worker is up too)."""
        self.check_alive()
        try:
            return requests.get(f"{self.url}{path}", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # still starting
            return False

    def check_alive(self) -> None:
        """Raise, with the end of its standard error, if a process has exited."""
        for child in self.children:
            if child.process.poll() is not None:
                tail = child.log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"{child.name} exited: {tail}")

    def kill(self, name: str, pid: int | None = None) -> None:
        """Kill one process named `name` (the one of id `pid`, if given) and its children at
        once (SIGKILL), as the OOM killer would."""
        child = next(c for c in self.children if c.name == name and pid in (None, c.process.pid))
        self.children.remove(child)
        os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after 20 s)."""
        for child in self.children:
            if child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
        for child in self.children:
            try:
                child.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
        self.children = []
        self.logs.cleanup()
