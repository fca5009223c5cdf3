"""`make demo DEMO_BQNS=2`: two BQN simulators, and a targets file the service accepts naming
them (the processes are not started here; tests/integration run the Procfile's)."""

import re

import pytest
import yaml

from sandbox import demo
from worker.core.targets import DEFAULT_TARGET
from worker.settings import Settings

STALE = ("BQN_URL", "BQN_USER", "BQN_PASSWORD", "BQN_TARGETS_FILE")


@pytest.fixture
def shell(monkeypatch):
    """A shell holding stale BQN settings, which the demo must not pass on."""
    for name in STALE:
        monkeypatch.setenv(name, f"stale-{name.lower()}")
    return monkeypatch


@pytest.fixture
def targets_file(monkeypatch, tmp_path):
    """The demo's targets file under tmp_path, not var/."""
    monkeypatch.setattr(demo, "TARGETS_FILE", tmp_path / "bqn-targets.yaml")


def simulators() -> dict[int, str]:
    """Port -> password of the BQN simulator commands `processes()` gives honcho."""
    commands = [c for c in demo.processes().values() if " -m sandbox bqn " in c]
    found = {
        int(re.search(r"--port (\d+)", c)[1]): re.search(r"--password (\S+)", c)[1]
        for c in commands
    }
    assert len(found) == len(commands), "two simulators on one port"
    return found


def test_two_bqns_are_an_ha_pair_in_a_targets_file_the_service_accepts(shell, targets_file):
    shell.setenv("DEMO_BQNS", "2")
    demo.write_targets(demo.bqns())
    env = demo.environment()

    assert not {"BQN_URL", "BQN_USER", "BQN_PASSWORD"} & set(env)
    assert env["BQN_TARGETS_FILE"] == str(demo.TARGETS_FILE)
    passwords = simulators()
    assert sorted(passwords) == [3443, 3444]
    targets = Settings.from_env(env).targets
    assert [t.name for t in targets] == ["core-a", "core-b"]
    assert {t.bqn.url: t.bqn.secret for t in targets} == {
        f"https://127.0.0.1:{port}/api/v1": password for port, password in passwords.items()
    }
    assert all(t.selector.everyone for t in targets)
    entries = yaml.safe_load(demo.TARGETS_FILE.read_text())["targets"]
    assert [e["password_env"] for e in entries] == ["BQN_CORE_A_PASSWORD", "BQN_CORE_B_PASSWORD"]
    assert not any("password" in e for e in entries), "a password written in the file"


def test_one_bqn_by_default_configured_by_bqn_url(shell):
    shell.delenv("DEMO_BQNS", raising=False)
    env = demo.environment()

    assert "BQN_TARGETS_FILE" not in env
    assert simulators() == {3443: env["BQN_PASSWORD"]}
    [target] = Settings.from_env(env).targets
    assert (target.name, target.bqn.url) == (DEFAULT_TARGET, "https://127.0.0.1:3443/api/v1")


@pytest.mark.parametrize("count", ["0", "3", "two"])
def test_other_counts_are_refused(shell, count):
    shell.setenv("DEMO_BQNS", count)
    with pytest.raises(SystemExit, match=f"DEMO_BQNS must be 1 .* or 2 .*not '{count}'"):
        demo.processes()


def test_the_guide_shows_both_bqns_and_the_targets(shell):
    shell.setenv("DEMO_BQNS", "2")
    text = demo.guide_text({"id_servicio": 7, "ip": "10.0.0.7"}, demo.bqns())

    assert "-u demo:demo \\\n        https://127.0.0.1:3443/api/v1/subscribers/10.0.0.7" in text
    assert "-u demo:demo-b \\\n        https://127.0.0.1:3444/api/v1/subscribers/10.0.0.7" in text
    assert f"curl -s http://127.0.0.1:{demo.PORT}/api/v1/targets -H 'Authorization: " in text
