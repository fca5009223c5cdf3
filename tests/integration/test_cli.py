"""The CLI run as the original script is run, against both simulators over HTTPS."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from sandbox.bqn import is_placeholder
from sandbox.seed import CIDR_IPS, SENSITIVE_FIELDS
from tests.integration.conftest import (
    API_KEY,
    BQN_PASSWORD,
    BQN_USER,
    expected_subscribers,
    managed_state,
)
from tests.rows import row
from tests.terminal import screen

pytestmark = pytest.mark.integration


def original_argv(env: dict[str, str]) -> list[str]:
    """`-w HOST -b BQN_IP USER PASSWORD KEY`, hosts given as host:port like an operator would."""
    return [
        "-w",
        env["WISPHUB_URL"].removeprefix("https://"),
        "-b",
        env["BQN_URL"].removeprefix("https://"),
        BQN_USER,
        BQN_PASSWORD,
        API_KEY,
    ]


def only_ca(env: dict[str, str]) -> dict[str, str]:
    """The environment a cron job would have: nothing but the private CA of the WispHub host."""
    return {"WISPHUB_CA_BUNDLE": env["WISPHUB_CA_BUNDLE"], "WISPHUB_BACKOFF": "0.01"}


@pytest.mark.slow
def test_two_thousand_clients_cold_warm_and_dry_run(wisphub_sim, bqn_sim, env, run_cli):
    rows = wisphub_sim.load(2000)
    rules_before = {
        ip: item
        for ip, item in bqn_sim.subscribers().items()
        if item["policyAssignedBy"] == "rules"
    }
    argv = original_argv(env)

    cold = run_cli(*argv, environ=only_ca(env))
    assert cold.code == 0, cold.err
    assert managed_state(bqn_sim) == expected_subscribers(rows)
    rules_after = {
        ip: item
        for ip, item in bqn_sim.subscribers().items()
        if item["policyAssignedBy"] == "rules"
    }
    assert rules_after == rules_before
    assert bqn_sim.policies()["Wisphub_block"]["rateLimitDownlink"]["rate"] == 0
    several = [r for r in rows if r["estado"] != "Cancelado" and r["ip"] in CIDR_IPS]
    assert several
    groups = bqn_sim.state.snapshot()["groups"]
    assert {g["subscriberGroupName"] for g in groups} == {"all-subscribers"} | {
        f"wisphub-{r['id_servicio']}" for r in several
    }

    bqn_sim.state.stats.reset()
    warm = run_cli(*argv, environ=only_ca(env))
    assert warm.code == 0, warm.err
    assert bqn_sim.writes() == 0
    assert "0 operations:" in warm.out

    wisphub_sim.state.update_client(rows[0]["id_servicio"], estado="Suspendido")
    dry = run_cli(*argv, "--dry-run", environ=only_ca(env))
    assert dry.code == 0, dry.err
    assert bqn_sim.writes() == 0
    assert f"plan: update subscriber {rows[0]['ip']} policy=Wisphub_block" in dry.out


@pytest.mark.slow
def test_environment_alone_runs_the_sync(wisphub_sim, bqn_sim, run_cli):
    rows = wisphub_sim.load(80)
    result = run_cli()
    assert result.code == 0, result.err
    assert managed_state(bqn_sim) == expected_subscribers(rows)


@pytest.mark.slow
def test_the_console_script_takes_the_original_command_line(wisphub_sim, bqn_sim, env):
    rows = wisphub_sim.load(60)
    script = Path(sys.executable).with_name("wisphub-bqn-sync")
    result = subprocess.run(
        [str(script), *original_argv(env), "-v"],
        env={**only_ca(env), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "clients read" in result.stdout
    assert managed_state(bqn_sim) == expected_subscribers(rows)


@pytest.mark.slow
def test_a_terminal_sees_progress_and_a_pipe_does_not(wisphub_sim, bqn_sim, env):
    wisphub_sim.load(1500)
    environ = {**env, "WISPHUB_PAGE_SIZE": "100", "PATH": os.environ.get("PATH", "")}
    text = on_a_terminal([], environ)
    assert "clients read: 1,500/1,500" in text
    assert "operations applied: " in text
    assert "/s" in text
    piped = subprocess.run(
        [str(SCRIPT)], env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert "operations applied" not in piped.stderr + piped.stdout


@pytest.mark.slow
def test_with_v_each_log_line_stands_apart_from_the_progress_line(wisphub_sim, bqn_sim, env):
    """Log lines were written onto the progress line, which has no line break of its own."""
    wisphub_sim.load(600)
    environ = {**env, "WISPHUB_PAGE_SIZE": "50", "PATH": os.environ.get("PATH", "")}
    text = on_a_terminal(["-v"], environ)
    assert "clients read: " in text  # the progress line was there
    logged = [line for line in screen(text) if " INFO " in line]
    assert len(logged) > 100  # a line per write
    assert [line for line in logged if not line[:4].isdecimal()] == []  # each from column 0


SCRIPT = Path(sys.executable).with_name("wisphub-bqn-sync")


def on_a_terminal(argv: list[str], environ: dict[str, str]) -> str:
    """What the console script writes to its standard error, a terminal (it must succeed)."""
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [str(SCRIPT), *argv], env=environ, stdout=subprocess.PIPE, stderr=terminal
    ) as child:
        os.close(terminal)
        shown = b""
        while chunk := _read_some(controller):
            shown += chunk
        assert child.wait(timeout=60) == 0
    os.close(controller)
    return shown.decode()


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the child closed the terminal
        return b""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"plan_internet": 451072}, ("Ana Pérez", "Online_Free"), id="plan-change"),
        pytest.param({"estado": "Suspendido"}, ("Ana Pérez", "Wisphub_block"), id="suspension"),
        pytest.param({"estado": "Cancelado"}, None, id="cancellation"),
        pytest.param(
            {"nombre": "Ana María Pérez"}, ("Ana María Pérez", "Online_basico"), id="rename"
        ),
    ],
)
@pytest.mark.slow
def test_a_change_in_wisphub_reaches_the_bqn(wisphub_sim, bqn_sim, run_cli, change, expected):
    wisphub_sim.state.upsert_client(row(501, "10.50.0.1", "Activo", "Online_basico", "Ana Pérez"))
    assert run_cli().code == 0
    wisphub_sim.state.update_client(501, **change)
    bqn_sim.state.stats.reset()
    assert run_cli().code == 0
    held = managed_state(bqn_sim).get("10.50.0.1")
    assert held == expected
    assert bqn_sim.writes() == 1


@pytest.mark.slow
def test_reactivation_lifts_the_block(wisphub_sim, bqn_sim, run_cli):
    wisphub_sim.state.upsert_client(row(502, "10.50.0.2", "Suspendido", "Online_basico", "Luis"))
    assert run_cli().code == 0
    assert managed_state(bqn_sim)["10.50.0.2"] == ("Luis", "Wisphub_block")
    wisphub_sim.state.update_client(502, estado="Activo")
    assert run_cli().code == 0
    assert managed_state(bqn_sim)["10.50.0.2"] == ("Luis", "Online_basico")


@pytest.mark.slow
def test_an_ip_change_moves_the_subscriber(wisphub_sim, bqn_sim, run_cli):
    wisphub_sim.state.upsert_client(row(503, "10.50.0.3", nombre="Marta", plan="Online_basico"))
    assert run_cli().code == 0
    wisphub_sim.state.update_client(503, ip="10.50.0.33")
    assert run_cli().code == 0
    assert managed_state(bqn_sim) == {"10.50.0.33": ("Marta", "Online_basico")}


def test_rules_subscribers_are_left_alone_and_stale_ones_removed(wisphub_sim, bqn_sim, run_cli):
    wisphub_sim.state.upsert_client(row(100, "10.60.0.9"))
    before = {ip: s for ip, s in bqn_sim.subscribers().items() if s["policyAssignedBy"] == "rules"}
    assert before
    bqn_sim.add_rest_subscriber("10.60.0.1", "gone", "Online_basico")
    assert run_cli().code == 0
    after = bqn_sim.subscribers()
    assert "10.60.0.1" not in after
    assert {ip: after[ip] for ip in before} == before


@pytest.mark.slow
def test_bad_ips_and_conflicts_are_reported(wisphub_sim, run_cli):
    for client in [
        row(601, "N/A"),
        row(602, ""),
        row(603, "10.0.0.0/8"),
        row(604, "10.70.0.1", ultimo_cambio="01/02/2026 10:00:00"),
        row(605, "10.70.0.1", ultimo_cambio="01/03/2026 10:00:00"),
    ]:
        wisphub_sim.state.upsert_client(client)
    result = run_cli("--json")
    report = json.loads(result.out)
    reasons = {s["id_servicio"]: s["reason"] for s in report["skipped"]}
    assert reasons[601] == "malformed IP 'N/A'"
    assert reasons[602] == "empty IP"
    assert "too large" in reasons[603]
    assert "605" in reasons[604]
    assert report["conflicts"] == [{"ip": "10.70.0.1", "winner": 605, "losers": [604]}]
    assert report["counts"]["skipped"] == 4
    text = run_cli()
    assert "skipped: client 601 ip 'N/A': malformed IP 'N/A'" in text.out
    assert "conflict: 10.70.0.1 claimed by clients 605 (kept) and 604" in text.out


@pytest.mark.slow
def test_non_ascii_names_round_trip(wisphub_sim, bqn_sim, run_cli):
    wisphub_sim.state.upsert_client(
        row(701, "10.80.0.1", plan="Fibra Óptica 50M", nombre="Núñez Güemes, José Ángel")
    )
    assert run_cli().code == 0
    held = bqn_sim.subscribers()["10.80.0.1"]
    assert held["subscriberId"] == "Núñez Güemes, José Ángel"
    assert held["policyRate"] == "Fibra_Óptica_50M"
    bqn_sim.state.stats.reset()
    assert run_cli().code == 0
    assert bqn_sim.writes() == 0


def test_a_client_wisphub_does_not_have_is_said_so(wisphub_sim, bqn_sim, run_cli):
    """It answered "0 clients read … ok" and exit status 0."""
    wisphub_sim.load(5)
    result = run_cli("--dry-run", "--client", "999999")
    assert result.code == 2
    assert result.err == (
        "wisphub-bqn-sync: --client: WispHub has no client 999999; nothing was changed\n"
    )
    assert result.out == ""


def test_one_client_can_be_synced_alone(wisphub_sim, bqn_sim, run_cli):
    wisphub_sim.load(30)
    wisphub_sim.state.upsert_client(row(801, "10.90.0.1", "Suspendido", nombre="Eva"))
    result = run_cli("--client", "801")
    assert result.code == 0, result.err
    assert managed_state(bqn_sim) == {"10.90.0.1": ("Eva", "Wisphub_block")}
    assert bqn_sim.policies()["Wisphub_block"]["rateLimitUplink"]["rate"] == 0


@pytest.mark.slow
def test_personal_data_and_secrets_never_reach_the_logs(wisphub_sim, env, run_cli):
    rows = wisphub_sim.load(100)
    result = run_cli("-vv")
    assert result.code == 0
    assert "GET /api/clientes/" in result.err  # -vv does log every request
    secrets = {API_KEY, BQN_PASSWORD}
    personal = {str(r[f]) for r in rows for f in SENSITIVE_FIELDS if r.get(f)}
    leaked = [value for value in secrets | personal if value in result.err]
    assert leaked == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"WISPHUB_API_KEY": "bad"}, "wrong API key or wrong WispHub host"),
        ({"BQN_PASSWORD": "bad"}, "refused the REST user or password"),
        ({"BQN_USER": ""}, "BQN_USER is not set"),
        ({"SUBSCRIBER_ID_FIELD": "cedula"}, "SUBSCRIBER_ID_FIELD must be one of"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(env, run_cli, change, message):
    result = run_cli(environ={**env, **change})
    assert result.code == 2
    assert message in result.err
    assert result.err.count("\n") == 1
    assert result.out == ""


def test_the_settings_dump_needs_no_redis_and_hides_a_redis_url_query(env, run_cli):
    alone = run_cli("--show-config", environ=env)
    assert alone.code == 0, alone.err
    assert json.loads(alone.out)["service"] == {
        "error": "REDIS_URL is not set (the Redis of the queue, such as redis://127.0.0.1:6379/0)"
    }
    url = "redis://10.0.0.5:6379/0?password=pw-in-query&ssl_ca_certs=/etc/ca.pem"
    shown = run_cli("--show-config", environ={**env, "REDIS_URL": url})
    assert shown.code == 0, shown.err
    service = json.loads(shown.out)["service"]
    assert service["redis_url"] == "redis://10.0.0.5:6379/0?password=***&ssl_ca_certs=***"
    assert "pw-in-query" not in shown.out + shown.err


def test_the_version_is_the_installed_package_s(run_cli, capsys):
    with pytest.raises(SystemExit) as caught:
        run_cli("--version")
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"wisphub-bqn-sync {version('wisphub-bqn-sync')}\n"


def test_usage_errors_exit_2(run_cli):
    with pytest.raises(SystemExit) as caught:
        run_cli("--client", "abc")
    assert caught.value.code == 2


def test_an_unreachable_bqn_exits_1(env, run_cli):
    result = run_cli(environ={**env, "BQN_URL": "127.0.0.1:9", "BQN_RETRIES": "0"})
    assert result.code == 1
    assert "BQN unreachable" in result.err


@pytest.mark.slow
def test_failed_writes_exit_1_and_are_listed(wisphub_sim, bqn_sim, env, run_cli):
    wisphub_sim.state.upsert_client(row(901, "10.91.0.1", nombre="Ada"))
    wisphub_sim.state.upsert_client(row(902, "10.91.0.2", nombre="Bo"))
    bqn_sim.state.faults.update(fail_every=1, fail_status=500, writes_only=True)
    result = run_cli("--json", environ={**env, "BQN_CONCURRENCY": "1"})
    assert result.code == 1
    report = json.loads(result.out)
    assert report["ok"] is False
    failures = report["failures"]
    # 8 plan policies with speeds, the block policy and 2 subscribers: nothing went through
    assert len(failures) == 11
    assert ("subscriber", "10.91.0.2") in {(f["kind"], f["key"]) for f in failures}
    # five writes tried, each with 3 retries; then the BQN is taken to be down
    assert [f["error"].split(":")[0] for f in failures[:5]] == ["BQN answered 500"] * 5
    assert {f["error"] for f in failures[5:]} == {"not attempted: the BQN kept failing"}
    assert bqn_sim.state.stats.count("POST") == 5 * (1 + 3)


@pytest.mark.slow
def test_with_writes_in_flight_a_failing_bqn_is_still_given_up_on(wisphub_sim, bqn_sim, run_cli):
    wisphub_sim.load(200)
    bqn_sim.state.faults.update(fail_every=1, fail_status=500, writes_only=True)
    report = json.loads(run_cli("--json").out)
    errors = [f["error"] for f in report["failures"]]
    tried = sum(error.startswith("BQN answered 500") for error in errors)
    # the five failures in a row, plus what was already in flight (8 at most)
    assert 5 <= tried <= 5 + 7
    assert len(errors) - tried > 100, "the rest was not attempted"
    assert bqn_sim.writes() <= tried * (1 + 3)


def test_a_failed_block_policy_holds_back_the_subscribers_that_need_it(
    wisphub_sim, bqn_sim, env, run_cli
):
    wisphub_sim.state.upsert_client(row(903, "10.91.0.3", "Suspendido", nombre="Cy"))
    wisphub_sim.state.upsert_client(row(904, "10.91.0.4", "Activo", "Online_basico", "Di"))
    # the block policy POST and its 3 retries fail (one write at a time); later writes go through
    bqn_sim.state.faults.update(fail_next=4, fail_status=503, writes_only=True)
    result = run_cli("--json", environ={**env, "BQN_CONCURRENCY": "1"})
    report = json.loads(result.out)
    assert result.code == 1
    errors = {f["key"]: f["error"] for f in report["failures"]}
    assert "BQN answered 503" in errors["Wisphub_block"]
    assert errors["10.91.0.3"] == "not sent: policy Wisphub_block could not be put in place"
    assert "10.91.0.3" not in bqn_sim.subscribers()
    assert managed_state(bqn_sim) == {"10.91.0.4": ("Di", "Online_basico")}


@pytest.mark.slow
def test_the_deletion_guard_holds_back_a_mass_delete(wisphub_sim, bqn_sim, run_cli):
    rows = wisphub_sim.load(300)
    assert run_cli().code == 0
    before = managed_state(bqn_sim)
    for client in rows[: len(rows) // 2]:  # WispHub answers a half list
        wisphub_sim.state.remove_client(client["id_servicio"])
    survivor = next(
        r for r in rows[len(rows) // 2 :] if r["estado"] == "Activo" and r["ip"] in before
    )
    wisphub_sim.state.update_client(survivor["id_servicio"], estado="Suspendido")
    result = run_cli()
    assert result.code == 1
    assert "GUARD:" in result.out
    assert "deletions held back" in result.out
    after = managed_state(bqn_sim)
    assert set(after) == set(before), "nothing was deleted"
    assert after[survivor["ip"]][1] == "Wisphub_block", "the rest was applied"
    forced = run_cli("--force")
    assert forced.code == 0, forced.out
    assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())


@pytest.mark.slow
def test_an_empty_wisphub_pass_never_deletes(wisphub_sim, bqn_sim, run_cli):
    rows = wisphub_sim.load(50)
    assert run_cli().code == 0
    before = managed_state(bqn_sim)
    for client in rows:
        wisphub_sim.state.remove_client(client["id_servicio"])
    result = run_cli("--force")
    assert result.code == 1
    assert "WispHub returned no clients" in result.out
    assert managed_state(bqn_sim) == before


@pytest.mark.slow
def test_writes_in_flight_never_get_ahead_of_their_policies(wisphub_sim, bqn_sim, run_cli):
    rows = wisphub_sim.load(400)
    before = {name for name, p in bqn_sim.state.policies.items() if is_placeholder(p)}
    bqn_sim.state.faults.update(latency_ms=5)  # keep several writes in flight at once
    result = run_cli("--json")
    assert result.code == 0
    left_to_the_operator = {p["policy"] for p in json.loads(result.out)["plans_without_speeds"]}
    made_up = {name for name, p in bqn_sim.state.policies.items() if is_placeholder(p)}
    assert made_up - left_to_the_operator <= before, "no subscriber got ahead of its policy"
    assert managed_state(bqn_sim) == expected_subscribers(rows)
