"""The systemd units in deploy/ start what the Procfile starts (the tests run the Procfile)."""

import re
import shlex
from pathlib import Path

import pytest

from sandbox.demo import ROOT, procfile

VENV_BIN = "/opt/wisphub-bqn-sync/.venv/bin/"
UNITS = {
    "web": "wisphub-bqn-sync-web.service",
    "worker": "wisphub-bqn-sync-worker@.service",
    "scheduler": "wisphub-bqn-sync-scheduler.service",
}


def exec_start(unit: str) -> str:
    text = (ROOT / "deploy" / unit).read_text()
    [line] = re.findall(r"^ExecStart=(.*)$", text, re.MULTILINE)
    return line


def words(command: str) -> list[str]:
    """The command's words, with shell defaults and refusals (`${X:-default}`, `${X:?why}`) read
    as systemd's `${X}`."""
    return shlex.split(re.sub(r"\$\{(\w+):[-?][^}]*\}", r"${\1}", command))


@pytest.mark.parametrize("name", sorted(UNITS))
def test_each_unit_runs_the_procfile_command(name):
    unit = words(exec_start(UNITS[name]))
    assert unit[0].startswith(VENV_BIN)
    assert [Path(unit[0]).name, *unit[1:]] == words(procfile()[name])


def test_every_procfile_process_has_a_unit():
    assert set(procfile()) == set(UNITS)
