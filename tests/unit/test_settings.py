"""Settings from the environment: URL forms, defaults and clear errors."""

import pytest

from worker.clients.connection import Connection
from worker.core.errors import ConfigError
from worker.settings import (
    ServiceSettings,
    Settings,
    bqn_base_url,
    redacted,
    wisphub_base_url,
)

BASE_ENV = {
    "WISPHUB_API_KEY": "k",
    "BQN_URL": "192.168.0.121",
    "BQN_USER": "u",
    "BQN_PASSWORD": "p",
}


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("api.wisphub.net", "https://api.wisphub.net"),
        ("api.wisphub.io:8443", "https://api.wisphub.io:8443"),
        ("https://api.wisphub.app/", "https://api.wisphub.app"),
        ("https://api.wisphub.app/api", "https://api.wisphub.app"),
        ("https://api.wisphub.app/api/", "https://api.wisphub.app"),
        ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
        ("https://wh.example.com/tenant/api", "https://wh.example.com/tenant"),
        ("::1", "https://[::1]"),
    ],
)
def test_wisphub_url_forms(value, url):
    assert wisphub_base_url(value) == url


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("192.168.0.121", "https://192.168.0.121:3443/api/v1"),
        ("192.168.0.121:8443", "https://192.168.0.121:8443/api/v1"),
        ("bqn.isp.example", "https://bqn.isp.example:3443/api/v1"),
        ("https://bqn.isp.example", "https://bqn.isp.example:3443/api/v1"),
        ("https://10.0.0.2:3443/api/v1/", "https://10.0.0.2:3443/api/v1"),
        ("2001:db8::5", "https://[2001:db8::5]:3443/api/v1"),
        ("[2001:db8::5]:4000", "https://[2001:db8::5]:4000/api/v1"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000/api/v1"),
    ],
)
def test_bqn_url_forms(value, url):
    assert bqn_base_url(value) == url


@pytest.mark.parametrize(
    "value", ["ftp://host", "https://", "https://host:99999", "https://u:p@host", "https://h/?x=1"]
)
def test_bad_urls_are_config_errors(value):
    with pytest.raises(ConfigError):
        bqn_base_url(value)


def test_defaults():
    settings = Settings.from_env(BASE_ENV)
    assert settings.wisphub.url == "https://api.wisphub.net"
    assert settings.targets[0].bqn.url == "https://192.168.0.121:3443/api/v1"
    assert settings.targets[0].bqn.ca_bundle is None
    assert settings.rules.block_policy == "Wisphub_block"
    assert settings.rules.subscriber_id_field == "nombre"


def test_each_api_connection_has_its_own_defaults():
    """The two APIs share one settings shape but not its values: the BQN's self-signed
    certificate rarely names its address and some releases need the relaxed ciphers."""
    settings = Settings.from_env(BASE_ENV)
    assert settings.wisphub == Connection(
        url="https://api.wisphub.net",
        secret=BASE_ENV["WISPHUB_API_KEY"],
        connect_timeout=3.05,
        read_timeout=8.0,
        retries=4,
        backoff=0.5,
        concurrency=4,
        page_size=500,
    )
    assert settings.targets[0].bqn == Connection(
        url="https://192.168.0.121:3443/api/v1",
        user=BASE_ENV["BQN_USER"],
        secret=BASE_ENV["BQN_PASSWORD"],
        connect_timeout=5.0,
        read_timeout=20.0,
        retries=3,
        backoff=0.5,
        concurrency=8,
        check_hostname=False,
        ciphers="DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK",
    )


def test_both_apis_read_the_shared_settings_under_their_prefix():
    env = {
        **BASE_ENV,
        "WISPHUB_TIMEOUT": "11",
        "WISPHUB_RETRIES": "2",
        "WISPHUB_BACKOFF": "0.25",
        "WISPHUB_CONCURRENCY": "16",
        "WISPHUB_CA_BUNDLE": "/etc/wisphub.pem",
        "BQN_TIMEOUT": "30",
        "BQN_RETRIES": "5",
        "BQN_BACKOFF": "1",
        "BQN_CONCURRENCY": "64",
        "BQN_CA_BUNDLE": "/etc/bqn.pem",
    }
    settings = Settings.from_env(env)
    wisphub, bqn = settings.wisphub, settings.targets[0].bqn
    assert (wisphub.read_timeout, wisphub.retries, wisphub.backoff) == (11.0, 2, 0.25)
    assert (wisphub.concurrency, wisphub.ca_bundle) == (16, "/etc/wisphub.pem")
    assert (bqn.read_timeout, bqn.retries, bqn.backoff) == (30.0, 5, 1.0)
    assert (bqn.concurrency, bqn.ca_bundle) == (64, "/etc/bqn.pem")


@pytest.mark.parametrize(
    ("name", "value"), [("WISPHUB_CONCURRENCY", "17"), ("BQN_CONCURRENCY", "65")]
)
def test_each_api_has_its_own_concurrency_ceiling(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**BASE_ENV, name: value})


@pytest.mark.parametrize("missing", sorted(BASE_ENV))
def test_missing_required_settings_are_named(missing):
    env = {k: v for k, v in BASE_ENV.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WISPHUB_PAGE_SIZE", "0"),
        ("WISPHUB_PAGE_SIZE", "many"),
        ("WISPHUB_TIMEOUT", "-1"),
        ("BQN_CHECK_HOSTNAME", "perhaps"),
        ("SUBSCRIBER_ID_FIELD", "cedula"),
        ("IPV6_PREFIX", "129"),
    ],
)
def test_bad_values_are_named(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**BASE_ENV, name: value})


def test_secrets_stay_out_of_repr():
    settings = Settings.from_env(
        {**BASE_ENV, "WISPHUB_API_KEY": "key-123", "BQN_PASSWORD": "pw-456"}
    )
    assert "key-123" not in repr(settings)
    assert "pw-456" not in repr(settings)


def test_redis_url_is_required():
    with pytest.raises(ConfigError, match="REDIS_URL is not set"):
        ServiceSettings.from_env({})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw-1@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
        ("rediss://sync:pw-1@redis.example:6380/2", "rediss://sync:***@redis.example:6380/2"),
        ("redis://10.0.0.5:6379/0?password=pw-1", "redis://10.0.0.5:6379/0?password=***"),
        (
            "redis://u:pw-1@10.0.0.5/0?ssl_keyfile=/k&password=pw-2&username=u",
            "redis://u:***@10.0.0.5/0?ssl_keyfile=***&password=***&username=***",
        ),
        ("unix:///run/redis.sock?db=1&password=pw-1", "unix:///run/redis.sock?db=***&password=***"),
        ("redis://10.0.0.5:6379/0#pw-1", "redis://10.0.0.5:6379/0#***"),
    ],
)
def test_the_redis_url_is_shown_without_its_secrets(url, shown):
    assert redacted(ServiceSettings.from_env({"REDIS_URL": url}))["redis_url"] == shown


@pytest.mark.parametrize(
    ("env", "action", "rate"),
    [
        ({}, "block", (0, 0)),
        ({"SUSPENDED_RATE": "256k/128k"}, "block", (0, 0)),  # unused with block
        ({"SUSPENDED_ACTION": "throttle", "SUSPENDED_RATE": "256k/128k"}, "throttle", (256, 128)),
        (
            {"SUSPENDED_ACTION": "throttle", "SUSPENDED_RATE": " 1M / 512 k"},
            "throttle",
            (1000, 512),
        ),
    ],
)
def test_the_suspension_mode_and_its_rate(env, action, rate):
    rules = Settings.from_env({**BASE_ENV, **env}).rules
    assert (rules.suspended_action, rules.suspended_rate) == (action, rate)
    expected = "Wisphub_throttle" if action == "throttle" else "Wisphub_block"
    assert rules.suspended_policy == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SUSPENDED_ACTION": "cut"}, "SUSPENDED_ACTION must be one of block, throttle"),
        ({"SUSPENDED_ACTION": "throttle"}, "SUSPENDED_RATE is not set"),
        (
            {"SUSPENDED_ACTION": "throttle", "SUSPENDED_RATE": "256k"},
            "SUSPENDED_RATE must be download/upload speeds such as 256k/128k, not '256k'",
        ),
        (
            {"SUSPENDED_ACTION": "throttle", "SUSPENDED_RATE": "fast/slow"},
            "SUSPENDED_RATE must be download/upload",
        ),
    ],
)
def test_a_wrong_suspension_setting_says_which(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**BASE_ENV, **env})
