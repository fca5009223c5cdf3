"""How the service reaches the APIs: never in clear text unless told, and never unverified
without saying so."""

from __future__ import annotations

import pytest

from worker.core.errors import ConfigError
from worker.settings import Settings, tls_warnings

ENV = {
    "WISPHUB_API_KEY": "k",
    "BQN_URL": "192.168.0.121",
    "BQN_USER": "u",
    "BQN_PASSWORD": "p",
}


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("WISPHUB_URL", "http://wisphub.example", "API key"),
        ("BQN_URL", "http://192.168.0.121", "BQN password"),
    ],
)
def test_plain_http_is_refused_unless_allowed(name, value, secret):
    with pytest.raises(ConfigError, match=f"{name} uses http://.*{secret}.*ALLOW_INSECURE_HTTP"):
        Settings.from_env({**ENV, name: value})
    allowed = Settings.from_env({**ENV, name: value, "ALLOW_INSECURE_HTTP": "1"})
    assert f"{name} uses plain http://" in " ".join(tls_warnings(allowed))


def test_an_unverified_bqn_is_warned_about_until_a_certificate_is_pinned():
    [warning] = tls_warnings(Settings.from_env(ENV))
    assert "not verified" in warning
    assert "BQN_CA_BUNDLE" in warning
    pinned = Settings.from_env({**ENV, "BQN_CA_BUNDLE": "/etc/wisphub-bqn-sync/bqn.pem"})
    assert tls_warnings(pinned) == []
