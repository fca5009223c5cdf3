"""The container image and docker-compose.yml, read from their files (no Docker here): the
production image holds only what production runs, installed from the hashed lock, and runs the
Procfile's commands; the entrypoint is run for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.demo import procfile
from tests.image import ROOT, compose, healthcheck, instructions, last, stages, target

ENTRYPOINT = ROOT / "docker-entrypoint.sh"
OUR_SERVICES = {
    name: service for name, service in compose()["services"].items() if "build" in service
}
# A stand-in for every command the Procfile names: prints its name, arguments and process id.
STUB = f"""#!{sys.executable}
import json, os, sys
print(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:], os.getpid()]))
"""


def run_entrypoint(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """The entrypoint started in `folder` (its Procfile), with `folder/bin` first in PATH."""
    path = f"{folder / 'bin'}:{os.environ['PATH']}"
    return subprocess.Popen(
        [str(ENTRYPOINT), *args],
        cwd=folder,
        env={**(env or {}), "PATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stub_commands(folder: Path, names: set[str]) -> None:
    (folder / "bin").mkdir()
    for name in names:
        stub = folder / "bin" / name
        stub.write_text(STUB)
        stub.chmod(0o755)


def expanded(command: str, env: dict[str, str]) -> list[str]:
    """The words of a Procfile command once the shell has put in the variables of `env`, all
    set (`${X:-default}` and `${X:?error}` are then `$X`)."""

    def value(match: re.Match[str]) -> str:
        return env[match.group(1) or match.group(2)]

    return shlex.split(re.sub(r"\$\{(\w+)(?::?[-?][^}]*)?\}|\$(\w+)", value, command))


def pip_installs(name: str) -> list[str]:
    return [arguments for word, arguments in target(name) if word == "RUN" and "pip " in arguments]


def test_the_default_target_is_the_production_image():
    assert stages()[-1].name == "production"


def test_the_production_image_installs_the_hashed_lock_and_nothing_from_the_sandbox():
    installs = pip_installs("production")
    assert installs[0] == "pip install --no-cache-dir --require-hashes -r requirements.lock"
    assert all("--no-deps" in command for command in installs[1:]), installs
    assert len(installs) == 2
    steps = target("production")
    assert not any(word == "COPY" and "sandbox" in arguments for word, arguments in steps)
    assert not any("[sandbox]" in arguments for _, arguments in steps)
    # nor the simulators' command, which would fail without their code
    assert installs[1].endswith("&& rm /usr/local/bin/wisphub-bqn-sandbox")


def test_the_sandbox_target_adds_the_sandbox_extra_on_the_production_image():
    sandbox = next(stage for stage in stages() if stage.name == "sandbox")
    assert target(sandbox.base) == target("production")
    assert any("'.[sandbox]'" in command for command in pip_installs("sandbox"))


@pytest.mark.parametrize("name", ["production", "sandbox"])
def test_the_processes_run_as_an_unprivileged_user(name):
    user = last("USER", name)
    assert user.isdigit(), "a numeric id, which Kubernetes' runAsNonRoot can check"
    assert user != "0"
    runs = " ".join(arguments for word, arguments in target(name) if word == "RUN")
    assert f"useradd --create-home --uid {user} app" in runs


def test_the_image_checks_the_web_process_health_on_its_own_port():
    command = healthcheck("production")
    assert command[:2] == ["python", "-c"]
    assert "'http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000')" in command[2]
    assert last("EXPOSE", "production") == "8000"


def test_the_entrypoint_is_the_script_that_runs_procfile_entries():
    [name] = json.loads(last("ENTRYPOINT", "production"))
    assert f"--chmod=0755 docker-entrypoint.sh /usr/local/bin/{name}" in {
        arguments for word, arguments in target("production") if word == "COPY"
    }
    assert json.loads(last("CMD", "production")) == ["web"]


def test_the_build_context_lets_in_what_the_dockerfile_copies_and_keeps_the_rest_out():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    copied = {
        source.rstrip("/")
        for word, arguments in instructions((ROOT / "Dockerfile").read_text())
        if word == "COPY"
        for source in [word for word in arguments.split() if not word.startswith("--")][:-1]
    }
    allowed = {line[1:].rstrip("/") for line in patterns if line.startswith("!")}
    assert copied == allowed - {""}
    assert ".env" not in allowed


def test_the_entrypoint_becomes_the_procfile_command(tmp_path):
    stub_commands(tmp_path, {"serve"})
    (tmp_path / "Procfile").write_text(
        '# other: not this\nother: false\nweb: serve --port "${PORT:-8000}" two\\ words\n'
    )
    process = run_entrypoint(tmp_path, "web", env={"PORT": "9001"})
    out, err = process.communicate(timeout=10)
    assert (process.returncode, err) == (0, "")
    # The same process id: the shell replaced itself with the command (docker stop reaches it).
    assert json.loads(out) == ["serve", "--port", "9001", "two words", process.pid]


@pytest.mark.parametrize("name", sorted(procfile()))
def test_the_entrypoint_runs_each_procfile_line_as_written(tmp_path, name):
    commands = procfile()
    stub_commands(tmp_path, {shlex.split(command)[0] for command in commands.values()})
    (tmp_path / "Procfile").write_text((ROOT / "Procfile").read_text())
    variables = set(re.findall(r"\$\{?(\w+)", commands[name]))
    env = {variable: f"{variable.lower()}-value" for variable in variables}
    process = run_entrypoint(tmp_path, name, env=env)
    out, err = process.communicate(timeout=10)
    assert (process.returncode, err) == (0, "")
    assert json.loads(out)[:-1] == expanded(commands[name], env)


@pytest.mark.parametrize("args", [[], ["nope"], ["web", "extra"]])
def test_the_entrypoint_refuses_anything_but_one_procfile_name(tmp_path, args):
    (tmp_path / "Procfile").write_text((ROOT / "Procfile").read_text())
    process = run_entrypoint(tmp_path, *args)
    out, err = process.communicate(timeout=10)
    assert (process.returncode, out) == (2, "")
    assert err.strip().endswith(f"one of the Procfile's entries: {' '.join(procfile())}")


def test_compose_builds_the_production_image_but_for_the_simulators():
    names = {stage.name for stage in stages()}
    for name, service in OUR_SERVICES.items():
        wanted = "sandbox" if "sandbox" in service.get("profiles", []) else "production"
        assert service["build"] == {"context": ".", "target": wanted}, name
        assert wanted in names
    images = {(service["image"], service["build"]["target"]) for service in OUR_SERVICES.values()}
    assert len(images) == len({image for image, _ in images}), "one image name per target"
    simulators = {
        name for name, service in OUR_SERVICES.items() if "sandbox" in service["build"]["target"]
    }
    assert simulators == {"wisphub-sim", "bqn-sim"}


def test_compose_runs_the_procfile_entries_through_the_image_entrypoint():
    production = {
        name: service for name, service in OUR_SERVICES.items() if "entrypoint" not in service
    }
    assert {tuple(service["command"]) for service in production.values()} == {
        (name,) for name in procfile()
    }


def test_compose_publishes_the_web_port_on_the_loopback_only():
    web = compose()["services"]["web"]
    [port] = web["ports"]
    assert port == "127.0.0.1:${PORT:-8000}:8000"
    assert web["environment"]["WEB_HOST"] == "0.0.0.0"
    assert "WEB_HOST=0.0.0.0" in {
        arguments for word, arguments in target("production") if word == "ENV"
    }
    # PORT in .env is the host's port: inside, the web process listens where the port leads.
    assert web["environment"]["PORT"] == port.rsplit(":", 1)[1] == last("EXPOSE", "production")
    assert (
        web["environment"]["REDIS_URL"]
        == compose()["services"]["worker"]["environment"]["REDIS_URL"]
    )
    unpublished = {
        name for name, service in compose()["services"].items() if "ports" not in service
    }
    assert unpublished == set(compose()["services"]) - {"web"}


def test_compose_checks_each_process_by_its_own_health_or_says_why_not():
    """The image's check is the web process': every other container replaces it."""
    for name, service in OUR_SERVICES.items():
        if service.get("command") == ["web"]:
            assert "healthcheck" not in service
        else:
            check = service["healthcheck"]
            assert check.get("disable") is True or check["test"][0] == "CMD", name
    assert OUR_SERVICES["worker"]["healthcheck"]["test"][1:3] == ["python", "-c"]


HA = "deploy/ha/docker-compose.yml"


def test_the_ha_compose_file_runs_every_procfile_process_on_sentinel_only():
    """One host of the HA pair (docs/high-availability.md): the Procfile's processes from the
    production image, finding Redis through the sentinels it must be given, with no Redis of
    its own and no REDIS_URL that would bypass them."""
    services = compose(HA)["services"]
    assert {tuple(service["command"]) for service in services.values()} == {
        (name,) for name in procfile()
    }
    for name, service in services.items():
        assert service["build"] == {"context": ".", "target": "production"}, name
        environment = service["environment"]
        assert "REDIS_URL" not in environment, name
        for required in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"):
            assert environment[required] == f"${{{required}:?set {required} in .env}}", name


def test_the_ha_compose_file_publishes_the_web_port_on_a_chosen_address_only():
    web = compose(HA)["services"]["web"]
    [port] = web["ports"]
    assert port == "${WEB_BIND:-127.0.0.1}:${PORT:-8000}:8000"
    assert web["environment"]["PORT"] == "8000" == last("EXPOSE", "production")
    unpublished = {
        name for name, service in compose(HA)["services"].items() if "ports" not in service
    }
    assert unpublished == {"worker", "scheduler"}


def test_the_ha_compose_file_checks_its_worker_as_the_one_host_file_does():
    """The worker's check reaches Redis as the service does (through the sentinels) and is
    run for real in tests/integration/test_image_checks.py."""
    worker = compose(HA)["services"]["worker"]["healthcheck"]["test"]
    assert worker[:3] == ["CMD", "python", "-c"]
    compile(worker[3], "healthcheck", "exec")
    assert compose(HA)["services"]["scheduler"]["healthcheck"] == {"disable": True}
