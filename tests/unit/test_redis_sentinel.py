"""Redis Sentinel's settings (`REDIS_SENTINELS` and the rest) and how a process names the Redis
it uses; no server is reached."""

from __future__ import annotations

import json

import pytest

from worker.core.errors import ConfigError
from worker.queue import connection
from worker.settings import RedisSentinel, ServiceSettings, redacted

SENTINEL = {"REDIS_SENTINELS": "10.0.0.1:26380, 10.0.0.2 ,[fd00::3]:26379"}
NAMED = {**SENTINEL, "REDIS_SENTINEL_MASTER": "wisphub"}


def test_the_sentinels_are_read_with_their_default_port():
    settings = ServiceSettings.from_env({**NAMED, "REDIS_DB": "2"})
    assert settings.redis_url is None
    assert settings.redis_sentinel == RedisSentinel(
        sentinels=(("10.0.0.1", 26380), ("10.0.0.2", 26379), ("fd00::3", 26379)),
        master="wisphub",
        db=2,
    )


def test_with_sentinel_a_202_waits_for_one_replica_by_default_and_not_without():
    assert ServiceSettings.from_env(NAMED).redis_wait_replicas == 1
    assert ServiceSettings.from_env({"REDIS_URL": "redis://r/0"}).redis_wait_replicas == 0
    chosen = ServiceSettings.from_env({**NAMED, "REDIS_WAIT_REPLICAS": "0", "REDIS_WAIT_MS": "50"})
    assert (chosen.redis_wait_replicas, chosen.redis_wait_ms) == (0, 50)


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({**NAMED, "REDIS_URL": "redis://r/0"}, "REDIS_URL and REDIS_SENTINELS are both set"),
        (SENTINEL, "REDIS_SENTINEL_MASTER is not set"),
        ({**NAMED, "REDIS_SENTINELS": "10.0.0.1:x"}, "REDIS_SENTINELS: '10.0.0.1:x' is not"),
        ({**NAMED, "REDIS_SENTINELS": "10.0.0.1,,10.0.0.2"}, "REDIS_SENTINELS: '' is not"),
        ({**NAMED, "REDIS_SENTINELS": "u:p@10.0.0.1"}, "REDIS_SENTINELS: 'u:p@10.0.0.1' is not"),
        ({**NAMED, "REDIS_SENTINELS": "10.0.0.1/0"}, "REDIS_SENTINELS: '10.0.0.1/0' is not"),
        ({**NAMED, "REDIS_DB": "-1"}, "REDIS_DB must be between 0 and 1023"),
        ({**NAMED, "REDIS_WAIT_MS": "0"}, "REDIS_WAIT_MS must be between 1 and 60000"),
        ({"REDIS_URL": "redis://r/0", "REDIS_PASSWORD": "p"}, "REDIS_PASSWORD is set but"),
        ({"REDIS_URL": "redis://r/0", "REDIS_DB": "1"}, "REDIS_DB is set but REDIS_SENTINELS"),
        ({"REDIS_URL": "redis://r/0", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_MASTER is"),
    ],
)
def test_a_wrong_redis_setting_is_one_line_naming_it(env, error):
    with pytest.raises(ConfigError, match="^" + error.replace("(", r"\(")):
        ServiceSettings.from_env(env)


def test_both_passwords_are_hidden_wherever_the_settings_are_shown():
    env = {**NAMED, "REDIS_PASSWORD": "redis-pw-1", "REDIS_SENTINEL_PASSWORD": "sentinel-pw-2"}
    settings = ServiceSettings.from_env(env)
    shown = json.dumps(redacted(settings))
    assert "pw-1" not in shown
    assert "pw-2" not in shown
    assert "pw-" not in repr(settings)
    assert redacted(settings)["redis_sentinel"]["password"] == "***"


def test_a_process_names_the_sentinels_master_without_the_password():
    settings = ServiceSettings.from_env({**NAMED, "REDIS_PASSWORD": "pw-1", "REDIS_DB": "3"})
    redis = connection.connect(settings)  # no connection is made
    assert connection.sentinel_managed(redis)
    assert connection.address(redis) == "sentinel://wisphub/3"
    assert redis.connection_pool.connection_kwargs["password"] == "pw-1"


def test_the_web_process_waits_for_a_free_connection_on_sentinel_too():
    """A flood of requests waits for one of `max_connections` (then fails) rather than opening
    more: the web process' bound on Redis holds with Sentinel."""
    redis = connection.connect(
        ServiceSettings.from_env(NAMED), blocking=True, max_connections=4, timeout=0.1
    )
    pool = redis.connection_pool
    assert isinstance(pool, connection.BlockingSentinelPool)
    assert (pool.max_connections, pool.timeout) == (4, 0.1)
