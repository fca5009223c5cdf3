"""Redis Sentinel's settings (`REDIS_SENTINELS` and the rest, `REDIS_TLS` and its files) and how
a process names the Redis it uses; no server is reached."""

from __future__ import annotations

import json

import pytest
from redis.connection import SSLConnection
from redis.exceptions import RedisError
from redis.sentinel import SentinelManagedSSLConnection

from sandbox.redis_server import free_port
from sandbox.tls import make_tls
from worker.core.errors import ConfigError
from worker.queue import connection
from worker.settings import RedisSentinel, RedisTls, ServiceSettings, redacted

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


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("tls"))


def tls_env(tls, **more):
    files = {"CA": tls.ca, "CERT": tls.cert, "KEY": tls.key}
    return {
        **NAMED,
        "REDIS_TLS": "1",
        **{f"REDIS_TLS_{name}_FILE": str(path) for name, path in files.items()},
        **more,
    }


def test_with_redis_tls_the_sentinels_and_the_master_are_reached_over_checked_tls(tls):
    settings = ServiceSettings.from_env(tls_env(tls))
    assert settings.redis_sentinel.tls == RedisTls(str(tls.ca), str(tls.cert), str(tls.key))
    redis = connection.connect(settings)  # no connection is made
    assert connection.address(redis) == "sentinel+tls://wisphub/0"
    pool = redis.connection_pool
    sentinels = [client.connection_pool for client in pool.sentinel_manager.sentinels]
    for each in [pool, *sentinels]:
        assert issubclass(each.connection_class, SSLConnection)
        kwargs = each.connection_kwargs
        assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == ("required", True)
        assert kwargs["ssl_ca_certs"] == str(tls.ca)
        assert (kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (str(tls.cert), str(tls.key))
    assert issubclass(pool.connection_class, SentinelManagedSSLConnection)  # finds the master


def test_without_redis_tls_nothing_speaks_tls():
    pool = connection.connect(ServiceSettings.from_env(NAMED)).connection_pool
    sentinels = [client.connection_pool for client in pool.sentinel_manager.sentinels]
    assert not any(issubclass(each.connection_class, SSLConnection) for each in [pool, *sentinels])


def test_redis_tls_checks_against_the_system_authorities_without_a_ca_file(tls):
    env = {**NAMED, "REDIS_TLS": "yes"}
    assert ServiceSettings.from_env(env).redis_sentinel.tls == RedisTls()
    kwargs = connection.connect(ServiceSettings.from_env(env)).connection_pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_ca_certs"]) == ("required", None)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"REDIS_TLS_CA_FILE": "/nonexistent/ca.pem"}, "REDIS_TLS_CA_FILE: no such file"),
        ({"REDIS_TLS_CERT_FILE": "/nonexistent/c.pem"}, "REDIS_TLS_CERT_FILE: no such file"),
        ({"REDIS_TLS_KEY_FILE": "/nonexistent/k.pem"}, "REDIS_TLS_KEY_FILE: no such file"),
        ({"REDIS_TLS_CA_FILE": "KEY"}, "REDIS_TLS_CA_FILE: '.*server.key' gives no CA"),
        ({"REDIS_TLS_KEY_FILE": "CA"}, "REDIS_TLS_CERT_FILE: '.*server.pem' and REDIS_TLS_KEY"),
        ({"REDIS_TLS_CERT_FILE": ""}, "REDIS_TLS_KEY_FILE is set but REDIS_TLS_CERT_FILE is not"),
        ({"REDIS_TLS": "0"}, "REDIS_TLS_CA_FILE is set but REDIS_TLS is not on"),
        ({"REDIS_TLS": "sure"}, "REDIS_TLS must be 1/0"),
    ],
)
def test_a_wrong_redis_tls_setting_stops_the_start_naming_it(tls, change, error):
    named = {"CA": str(tls.ca), "KEY": str(tls.key)}
    env = tls_env(tls, **{key: named.get(value, value) for key, value in change.items()})
    with pytest.raises(ConfigError, match="^" + error):
        ServiceSettings.from_env(env)


def test_redis_tls_is_refused_beside_redis_url_which_says_tls_itself(tls):
    env = {"REDIS_URL": "redis://r/0", "REDIS_TLS_CA_FILE": str(tls.ca)}
    with pytest.raises(ConfigError, match=r"^REDIS_TLS_CA_FILE is set but REDIS_SENTINELS is not"):
        ServiceSettings.from_env(env)
    with pytest.raises(ConfigError, match="rediss://"):
        ServiceSettings.from_env({"REDIS_URL": "redis://r/0", "REDIS_TLS": "1"})


def test_no_master_found_is_said_in_a_line_without_the_sentinels_clients(tmp_path):
    """redis-py lists every sentinel's client at length when none names a master (kilobytes in
    `/readyz` and the logs); three sentinels that refuse the connection (closed ports)."""
    ports = [free_port() for _ in range(3)]
    sentinels = ",".join(f"127.0.0.1:{port}" for port in ports)
    env = {"REDIS_SENTINELS": sentinels, "REDIS_SENTINEL_MASTER": "wisphub"}
    redis = connection.connect(ServiceSettings.from_env(env), socket_connect_timeout=1)
    with pytest.raises(RedisError) as raised:
        redis.ping()
    said = connection.why(raised.value)
    assert len(str(raised.value)) > 3 * len(said), "redis-py's own message, for contrast"
    assert said.startswith("No master found for 'wisphub': ")
    assert "<redis" not in said
    refused = [f"connecting to 127.0.0.1:{port}. Connection refused." for port in ports]
    assert said.count("Connection refused.") == 3
    assert all(each in said for each in refused), said
