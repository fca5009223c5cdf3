"""Settings, read from environment variables (12-factor); the CLI maps its arguments onto them.

Every setting has one environment variable; `Settings.from_env` validates them all and raises
`ConfigError` with the variable's name when one is missing or wrong.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any
from urllib.parse import urlsplit

from croniter import croniter

from worker.errors import ConfigError

SUBSCRIBER_ID_FIELDS = ("nombre", "usuario", "id_servicio")
MULTI_IP_MODES = ("group", "subscribers", "skip")

# Bequant's own client relaxes the cipher list because some BQN releases fail the TLS handshake
# with OpenSSL's defaults (see docs/bqn-api.md, "Relaxed ciphers").
BQN_CIPHERS = "DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK"
BQN_DEFAULT_PORT = 3443


@dataclass(frozen=True)
class MappingRules:
    """How WispHub clients become BQN subscribers."""

    subscriber_id_field: str = "nombre"
    block_policy: str = "Wisphub_block"
    ipv6_prefix: int = 64
    multi_ip_mode: str = "group"


@dataclass(frozen=True)
class GuardLimits:
    """The deletion guard's limits: up to `floor` deletions always pass; beyond, at most
    `max_fraction` of the managed entries, and a WispHub pass may be at most `max_fraction`
    shorter than the last complete one."""

    max_fraction: float = 0.10
    floor: int = 10


@dataclass(frozen=True)
class WispHubSettings:
    """Where and how to read WispHub."""

    url: str = "https://api.wisphub.net"
    api_key: str = field(default="", repr=False)
    ca_bundle: str | None = None
    page_size: int = 500
    connect_timeout: float = 3.05
    read_timeout: float = 8.0
    retries: int = 4
    backoff: float = 0.5
    concurrency: int = 4


@dataclass(frozen=True)
class BqnSettings:
    """Where and how to reach the BQN REST API."""

    url: str
    user: str
    password: str = field(repr=False)
    ca_bundle: str | None = None
    check_hostname: bool = False
    ciphers: str = BQN_CIPHERS
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    retries: int = 3
    backoff: float = 0.5
    concurrency: int = 8


@dataclass(frozen=True)
class Settings:
    """Everything the sync engine needs."""

    wisphub: WispHubSettings
    bqn: BqnSettings
    rules: MappingRules = MappingRules()
    plan_speeds_file: str | None = None
    guard: GuardLimits = GuardLimits()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate every setting; raise `ConfigError` naming the first bad one."""
        read = _Reader(env)
        wisphub = WispHubSettings(
            url=wisphub_base_url(read.text("WISPHUB_URL", WispHubSettings.url)),
            api_key=read.required("WISPHUB_API_KEY", "the WispHub API key"),
            ca_bundle=read.optional("WISPHUB_CA_BUNDLE"),
            page_size=read.integer("WISPHUB_PAGE_SIZE", WispHubSettings.page_size, 1, 5000),
            read_timeout=read.number("WISPHUB_TIMEOUT", WispHubSettings.read_timeout),
            retries=read.integer("WISPHUB_RETRIES", WispHubSettings.retries, 0, 10),
            backoff=read.number("WISPHUB_BACKOFF", WispHubSettings.backoff),
            concurrency=read.integer("WISPHUB_CONCURRENCY", WispHubSettings.concurrency, 1, 16),
        )
        bqn = BqnSettings(
            url=bqn_base_url(read.required("BQN_URL", "the BQN address")),
            user=read.required("BQN_USER", "the BQN REST user"),
            password=read.required("BQN_PASSWORD", "the BQN REST password"),
            ca_bundle=read.optional("BQN_CA_BUNDLE"),
            check_hostname=read.flag("BQN_CHECK_HOSTNAME", default=False),
            ciphers=read.text("BQN_TLS_CIPHERS", BQN_CIPHERS),
            read_timeout=read.number("BQN_TIMEOUT", BqnSettings.read_timeout),
            retries=read.integer("BQN_RETRIES", BqnSettings.retries, 0, 10),
            backoff=read.number("BQN_BACKOFF", BqnSettings.backoff),
            concurrency=read.integer("BQN_CONCURRENCY", BqnSettings.concurrency, 1, 64),
        )
        rules = MappingRules(
            subscriber_id_field=read.choice(
                "SUBSCRIBER_ID_FIELD", MappingRules.subscriber_id_field, SUBSCRIBER_ID_FIELDS
            ),
            block_policy=read.text("BLOCK_POLICY", MappingRules.block_policy),
            ipv6_prefix=read.integer("IPV6_PREFIX", MappingRules.ipv6_prefix, 1, 128),
            multi_ip_mode=read.choice("MULTI_IP_MODE", MappingRules.multi_ip_mode, MULTI_IP_MODES),
        )
        return cls(
            wisphub=wisphub,
            bqn=bqn,
            rules=rules,
            plan_speeds_file=read.optional("PLAN_SPEEDS_FILE"),
            guard=GuardLimits(
                max_fraction=read.fraction("MAX_DELETE_FRACTION", GuardLimits.max_fraction),
                floor=read.integer("DELETE_GUARD_FLOOR", GuardLimits.floor, 0, 1_000_000),
            ),
        )


@dataclass(frozen=True)
class HistoryLimits:
    """How much history Redis keeps: events per client, for how long after a client's last
    event, for how many clients at most (the least recently active go first), and how many
    full-reconcile reports."""

    per_client: int = 50
    days: int = 30
    clients: int = 20_000
    reconcile_reports: int = 30


@dataclass(frozen=True)
class ServiceSettings:
    """What the web, worker and scheduler processes need besides the engine's settings."""

    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)  # may hold a password
    webhook_secret: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    allow_unauthenticated: bool = False
    poll_interval: int = 60
    # The poller compares WispHub with the BQN's own lists every this many passes.
    poll_bqn_every: int = 1
    plan_refresh_interval: int = 900
    reconcile_cron: str = "0 3 * * *"
    reconcile_on_start: bool = True
    queue_name: str = "wisphub-bqn-sync"
    webhook_rate_limit: str | None = None
    trusted_proxies: int = 0
    # Seconds before each retry of a job that failed transiently: 57 minutes over 10 retries.
    retry_intervals: tuple[int, ...] = (5, 15, 30, 60, 120, 300, 600, 900, 1200, 1200)
    history: HistoryLimits = field(default_factory=HistoryLimits)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServiceSettings:
        """Read and validate the service settings; raise `ConfigError` naming a bad one."""
        read = _Reader(env)
        settings = cls(
            redis_url=read.text("REDIS_URL", cls.redis_url),
            webhook_secret=read.optional("WEBHOOK_SECRET"),
            api_token=read.optional("API_TOKEN"),
            allow_unauthenticated=read.flag("ALLOW_UNAUTHENTICATED", default=False),
            poll_interval=read.integer("POLL_INTERVAL", cls.poll_interval, 0, 86400),
            poll_bqn_every=read.integer("POLL_BQN_EVERY", cls.poll_bqn_every, 1, 1000),
            plan_refresh_interval=read.integer(
                "PLAN_REFRESH_INTERVAL", cls.plan_refresh_interval, 0, 7 * 86400
            ),
            reconcile_cron=read.text("RECONCILE_CRON", cls.reconcile_cron),
            reconcile_on_start=read.flag("RECONCILE_ON_START", default=True),
            queue_name=read.text("QUEUE_NAME", cls.queue_name),
            webhook_rate_limit=read.optional("WEBHOOK_RATE_LIMIT"),
            trusted_proxies=read.integer("TRUSTED_PROXIES", cls.trusted_proxies, 0, 10),
            retry_intervals=read.seconds_list("RETRY_INTERVALS", cls.retry_intervals),
            history=HistoryLimits(
                per_client=read.integer("HISTORY_PER_CLIENT", HistoryLimits.per_client, 1, 1000),
                days=read.integer("HISTORY_DAYS", HistoryLimits.days, 1, 3650),
                clients=read.integer("HISTORY_CLIENTS", HistoryLimits.clients, 1, 10_000_000),
                reconcile_reports=read.integer(
                    "RECONCILE_REPORTS", HistoryLimits.reconcile_reports, 1, 1000
                ),
            ),
        )
        if not _is_cron(settings.reconcile_cron):
            raise ConfigError(
                f"RECONCILE_CRON is not a cron expression: {settings.reconcile_cron!r}"
            )
        return settings


REDACTED = "***"


def redacted(settings: Any) -> dict[str, Any]:
    """A settings dataclass as a JSON-ready dict for debugging: every secret (the fields kept
    out of `repr`) is replaced by `***`, or for a URL (`REDIS_URL`) its password only."""
    result: dict[str, Any] = {}
    for item in fields(settings):
        value = getattr(settings, item.name)
        if is_dataclass(value):
            result[item.name] = redacted(value)
        elif not item.repr and isinstance(value, str) and "://" in value:
            result[item.name] = _without_password(value)
        elif not item.repr:
            result[item.name] = REDACTED if value else value
        else:
            result[item.name] = list(value) if isinstance(value, tuple) else value
    return result


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return parts._replace(netloc=f"{user}{REDACTED}@{host}").geturl()


def _is_cron(expression: str) -> bool:
    """True when `expression` is a five-field cron expression."""
    return len(expression.split()) == 5 and croniter.is_valid(expression)


class _Reader:
    """Typed access to environment variables with errors that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def required(self, name: str, what: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ConfigError(f"{name} is not set ({what})")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, not {value}")
        return value

    def number(self, name: str, default: float) -> float:
        """A positive number (seconds, backoff factors)."""
        value = self._float(name, default, "a number")
        if value <= 0:
            raise ConfigError(f"{name} must be more than 0, not {value}")
        return value

    def fraction(self, name: str, default: float) -> float:
        """A number from 0 to 1."""
        value = self._float(name, default, "a fraction such as 0.1")
        if not 0 <= value <= 1:
            raise ConfigError(f"{name} must be between 0 and 1, not {value}")
        return value

    def _float(self, name: str, default: float, what: str) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {what}, not {raw!r}") from None

    def flag(self, name: str, *, default: bool) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be 1/0, true/false, yes/no or on/off, not {raw!r}")

    def seconds_list(self, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
        """Comma-separated whole seconds, 1 to 20 of them (`5,30,300`); empty keeps `default`."""
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            values = tuple(int(part) for part in raw.split(","))
        except ValueError:
            raise ConfigError(f"{name} must be seconds separated by commas, not {raw!r}") from None
        if not 1 <= len(values) <= 20 or not all(0 <= v <= 86400 for v in values):
            raise ConfigError(f"{name} must list 1 to 20 delays of 0 to 86400 seconds, not {raw!r}")
        return values

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value


def _split_address(value: str, default_scheme: str) -> tuple[str, str, int | None, str]:
    """Scheme, host, port and path of a host, host:port, [v6]:port, bare IPv6 or full URL."""
    text = value.strip()
    try:
        if ipaddress.ip_address(text).version == 6:
            text = f"[{text}]"
    except ValueError:
        pass
    if "://" not in text:
        text = f"{default_scheme}://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"not a host or http(s) URL: {value!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"bad port in {value!r}") from None
    if parts.query or parts.fragment or parts.username:
        raise ConfigError(f"unexpected credentials, query or fragment in {value!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts.scheme, host, port, parts.path.rstrip("/")


def wisphub_base_url(value: str) -> str:
    """Normalise `-w`/`WISPHUB_URL` (host, host:port or URL) to a base without the `/api` part."""
    scheme, host, port, path = _split_address(value, "https")
    path = path.removesuffix("/api")
    return f"{scheme}://{host}{f':{port}' if port else ''}{path}"


def bqn_base_url(value: str) -> str:
    """Normalise `-b`/`BQN_URL` (IP, host:port or URL) to `https://host:3443/api/v1` form."""
    scheme, host, port, path = _split_address(value, "https")
    return f"{scheme}://{host}:{port or BQN_DEFAULT_PORT}{path or '/api/v1'}"
