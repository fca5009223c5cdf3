"""Every command answers `--help` and `--version` and does nothing else; none falls back to a
default Redis; a configuration error is one line and exit status 2 (which systemd's units do
not restart on); the simulators' command says what to install when the sandbox extra is
missing."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from sandbox.demo import ROOT
from sandbox.processes import Processes
from sandbox.redis_server import free_port

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
COMMANDS = ("wisphub-bqn-sync", "wisphub-bqn-sync-scheduler", "wisphub-bqn-sandbox")
# Run before a command's `main` in a child: any connection it tries fails, so a command that
# would fall back to a default Redis (127.0.0.1:6379) cannot reach one, whatever runs there.
NO_CONNECTIONS = """
import socket
def refuse(*args, **kwargs):
    raise OSError("this test allows no connection")
socket.socket.connect = socket.socket.connect_ex = refuse
"""


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env={**env, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def run_main(
    module: str, argv: list[str], env: dict[str, str], before: str = ""
) -> subprocess.CompletedProcess[str]:
    """`module.main(argv)` in a child Python allowed no connection, after `before`."""
    code = f"import sys\n{NO_CONNECTIONS}\n{before}\nfrom {module} import main\n"
    return run([sys.executable, "-c", f"{code}sys.exit(main({argv!r}))"], env)


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_tells_its_version(command, redis_url, redis):
    result = run([str(BIN / command), "--version"], {"REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{command} {version('wisphub-bqn-sync')}\n"
    assert redis.keys() == []


@pytest.mark.slow
@pytest.mark.parametrize("command", ["wisphub-bqn-sync-scheduler", "wisphub-bqn-sync-worker"])
@pytest.mark.parametrize("option", ["--help", "-h", "--version"])
def test_the_processes_asked_for_help_start_nothing(command, option, redis_url, redis):
    result = run([str(BIN / command), option], {"REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: " if option != "--version" else command)
    assert result.stderr == ""
    assert redis.keys() == []  # no worker, leader lock or cron registered, nothing queued


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "prog"),
    [
        ("worker.queue.scheduler", "wisphub-bqn-sync-scheduler"),
        ("worker.rqworker", "wisphub-bqn-sync-worker"),
    ],
)
def test_the_processes_without_redis_url_refuse_to_start(module, prog):
    result = run_main(module, [], {"REDIS_URL": ""})
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"{prog}: REDIS_URL is not set (the Redis of the queue, such as redis://127.0.0.1:6379/0)\n"
    )
    assert result.stdout == ""


@pytest.mark.slow
@pytest.mark.parametrize("module", ["cheroot", "trustme"])
def test_the_simulators_without_the_sandbox_extra_say_what_to_install(module):
    result = run_main("sandbox.__main__", ["wisphub"], {}, f"sys.modules[{module!r}] = None")
    assert result.returncode == 2
    assert result.stderr == (
        f"wisphub-bqn-sandbox: {module} is missing: the simulators need the sandbox extra, "
        "pip install 'wisphub-bqn-sync[sandbox]'\n"
    )


@pytest.mark.slow
def test_a_worker_with_a_wrong_setting_exits_2_with_one_line(service_env, redis):
    processes = Processes({**service_env, "BQN_USER": ""}, ["worker"])
    try:
        [worker] = processes.children
        assert worker.process.wait(timeout=30) == 2
        assert worker.log.read_text() == (
            "wisphub-bqn-sync-worker: BQN_USER is not set (the BQN REST user)\n"
        )
    finally:
        processes.stop()
    assert redis.keys() == []  # it never registered as a worker


@pytest.mark.slow
@pytest.mark.parametrize("command", ["wisphub-bqn-sync-scheduler", "wisphub-bqn-sync-worker"])
def test_the_processes_with_redis_down_say_so_in_one_line(command, service_env):
    """Status 1, not 2: systemd restarts them, and Redis may be back by then."""
    down = f"redis://127.0.0.1:{free_port()}/0"
    result = run([str(BIN / command)], {**service_env, "REDIS_URL": down})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert "Redis unreachable" in line


@pytest.mark.slow
def test_every_process_refuses_a_bad_targets_file(service_env, tmp_path, redis):
    """A typo in the targets file must never leave a BQN silently unsynced: the web, worker
    and scheduler all stop at start-up, naming the target and the key."""
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "targets:\n"
        "  - name: core-a\n"
        "    url: https://127.0.0.1:3443\n"
        "    user: sync\n"
        "    password: not-shown-0123\n"
        "    netwroks: [10.10.0.0/16]\n",
        encoding="utf-8",
    )
    single = ("BQN_URL", "BQN_USER", "BQN_PASSWORD")
    env = {k: v for k, v in service_env.items() if k not in single}
    processes = Processes({**env, "BQN_TARGETS_FILE": str(targets)}, ["web", "worker", "scheduler"])
    try:
        for child in processes.children:
            assert child.process.wait(timeout=60) != 0, child.name
            log = child.log.read_text()
            assert f"BQN_TARGETS_FILE {targets}: target 'core-a': unknown key 'netwroks'" in log
            assert "not-shown-0123" not in log
    finally:
        processes.stop()
    assert redis.keys() == []  # nothing registered, nothing queued
