"""The one-shot CLI with several BQNs: every target by default, one with `--target`, a target
down failing alone, and the original command line still syncing its one BQN."""

from __future__ import annotations

import pytest

from tests.integration.conftest import (
    BQN_PASSWORD,
    BQN_USER,
    expected_subscribers,
    make_pair_env,
    managed_state,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(env, bqn_sim, second_bqn, tmp_path):
    """The CLI's environment with core-a (`bqn_sim`) and core-b (`second_bqn`)."""
    return make_pair_env(env, bqn_sim, second_bqn, tmp_path)


def test_every_target_by_default_and_one_on_request(
    wisphub_sim, bqn_sim, second_bqn, pair, run_cli
):
    wisphub_sim.load(60)
    expected = expected_subscribers(wisphub_sim.rows())
    only_a = run_cli("--target", "core-a", environ=pair)
    assert only_a.code == 0, only_a.err
    assert managed_state(bqn_sim) == expected
    assert managed_state(second_bqn) != expected
    both = run_cli(environ=pair)
    assert both.code == 0, both.err
    assert managed_state(second_bqn) == expected
    unknown = run_cli("--target", "core-c", environ=pair)
    assert unknown.code == 2
    assert "no target named 'core-c' (targets: core-a, core-b)" in unknown.err


def test_a_target_down_fails_alone(wisphub_sim, bqn_sim, second_bqn, pair, run_cli):
    wisphub_sim.load(30)
    with second_bqn.outage():
        result = run_cli(environ=pair)
    assert result.code == 1
    assert "target core-b failed, nothing more was changed there" in result.err
    assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())


def test_the_original_command_line_syncs_its_one_bqn(
    wisphub_sim, bqn_sim, second_bqn, pair, run_cli
):
    wisphub_sim.load(20)
    before = managed_state(second_bqn)
    environ = {**pair, "WISPHUB_API_KEY": ""}
    result = run_cli(
        "-b", bqn_sim.server.url, BQN_USER, BQN_PASSWORD, pair["WISPHUB_API_KEY"], environ=environ
    )
    assert result.code == 0, result.err
    assert managed_state(bqn_sim) == expected_subscribers(wisphub_sim.rows())
    assert managed_state(second_bqn) == before
