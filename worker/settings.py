"""Settings, read from environment variables (12-factor); the CLI maps its arguments onto them.

Every setting has one environment variable; `Settings.from_env` validates them all and raises
`ConfigError` with the variable's name when one is missing or wrong.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from croniter import croniter

from worker import defaults
from worker.clients.connection import Connection
from worker.core import phrases
from worker.core.errors import ConfigError
from worker.core.locations import FIELDS as LOCATION_FIELDS
from worker.core.rules import (
    BLOCK,
    MULTI_IP_MODES,
    SUBSCRIBER_ID_FIELDS,
    SUSPENDED_ACTIONS,
    THROTTLE,
    GuardLimits,
    MappingRules,
)
from worker.core.speeds import SpeedError, parse_speed
from worker.core.targets import DEFAULT_TARGET
from worker.targets import Target, default_target, read_targets


@dataclass(frozen=True)
class Settings:
    """Everything the sync engine needs."""

    wisphub: Connection
    # The BQNs kept in step (`worker.targets`), at least one.
    targets: tuple[Target, ...]
    rules: MappingRules = field(default_factory=MappingRules)
    plan_speeds_file: str | None = None
    guard: GuardLimits = field(default_factory=GuardLimits)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate every setting; raise `ConfigError` naming the first bad one."""
        read = _Reader(env)
        wisphub = read.connection(
            "WISPHUB",
            url=wisphub_base_url(read.text("WISPHUB_URL", defaults.WISPHUB_URL)),
            secret=read.required("WISPHUB_API_KEY", "the WispHub API key"),
            page_size=read.integer("WISPHUB_PAGE_SIZE", defaults.WISPHUB_PAGE_SIZE, 1, 5000),
        )
        targets = _targets(read)
        if not read.flag("ALLOW_INSECURE_HTTP", default=False):
            for name, connection in _urls(wisphub, targets):
                if connection.url.startswith("http://"):
                    raise ConfigError(
                        f"{name} uses http://, which sends the "
                        f"{'API key' if name == 'WISPHUB_URL' else 'BQN password'} in clear "
                        "text: use https://, or set ALLOW_INSECURE_HTTP=1 (a lab, never "
                        "production)"
                    )
        rules = MappingRules(
            subscriber_id_field=read.choice(
                "SUBSCRIBER_ID_FIELD", defaults.SUBSCRIBER_ID_FIELD, SUBSCRIBER_ID_FIELDS
            ),
            block_policy=read.text("BLOCK_POLICY", defaults.BLOCK_POLICY),
            ipv6_prefix=read.integer("IPV6_PREFIX", defaults.IPV6_PREFIX, 1, 128),
            multi_ip_mode=read.choice("MULTI_IP_MODE", defaults.MULTI_IP_MODE, MULTI_IP_MODES),
            suspended_action=read.choice("SUSPENDED_ACTION", BLOCK, SUSPENDED_ACTIONS),
            throttle_policy=read.text("THROTTLE_POLICY", defaults.THROTTLE_POLICY),
            suspended_rate=_suspended_rate(read),
            location_groups=_location_groups(read),
            groups_per_ip=read.integer("BQN_GROUPS_PER_IP", defaults.GROUPS_PER_IP, 1, 32),
        )
        return cls(
            wisphub=wisphub,
            targets=tuple(targets),
            rules=rules,
            plan_speeds_file=read.optional("PLAN_SPEEDS_FILE"),
            guard=GuardLimits(
                max_fraction=read.fraction("MAX_DELETE_FRACTION", defaults.MAX_DELETE_FRACTION),
                floor=read.integer("DELETE_GUARD_FLOOR", defaults.DELETE_GUARD_FLOOR, 0, 1_000_000),
            ),
        )


def _targets(read: _Reader) -> list[Target]:
    """The targets of `BQN_TARGETS_FILE`, or the one BQN of `BQN_URL`; never both (which
    would leave one of them silently unused)."""

    def connect(url: str, user: str, password: str, ca_bundle: str | None) -> Connection:
        connection = read.connection(
            "BQN",
            url=bqn_base_url(url),
            user=user,
            secret=password,
            check_hostname=read.flag("BQN_CHECK_HOSTNAME", default=False),
            ciphers=read.text("BQN_TLS_CIPHERS", defaults.BQN_CIPHERS),
        )
        return replace(connection, ca_bundle=ca_bundle or connection.ca_bundle)

    path = read.optional("BQN_TARGETS_FILE")
    if path is None:
        return [
            default_target(
                connect(
                    read.required("BQN_URL", "the BQN address"),
                    read.required("BQN_USER", "the BQN REST user"),
                    read.required("BQN_PASSWORD", "the BQN REST password"),
                    None,
                )
            )
        ]
    single = {
        "BQN_URL": read.optional("BQN_URL"),
        "BQN_USER": read.optional("BQN_USER"),
        "BQN_PASSWORD": read.optional("BQN_PASSWORD"),
    }
    if also := [name for name, value in single.items() if value]:
        raise ConfigError(
            f"BQN_TARGETS_FILE and {', '.join(also)} are both set: name that BQN in the file "
            "(as one of its targets) and unset the variables"
        )
    return read_targets(path, read.env, connect)


def _urls(wisphub: Connection, targets: list[Target]) -> list[tuple[str, Connection]]:
    """Each API address with the setting that names it."""
    named = [("WISPHUB_URL", wisphub)]
    for target in targets:
        named.append((_bqn_url_setting(target), target.bqn))
    return named


def _bqn_url_setting(target: Target) -> str:
    """Where a target's address is set: `BQN_URL`, or its entry in the targets file."""
    return "BQN_URL" if target.name == DEFAULT_TARGET else f"target {target.name!r}: url"


def tls_warnings(settings: Settings) -> list[str]:
    """What is left unchecked in how the service reaches the APIs, for the start-up log and the
    status page: each line says what it risks and how to fix it."""
    warnings = []
    for target in settings.targets:
        if target.bqn.ca_bundle is not None:
            continue
        subject = (
            phrases.BQN_CERTIFICATE
            if target.name == DEFAULT_TARGET
            else phrases.TARGET_CERTIFICATE.format(name=target.name)
        )
        warnings.append(phrases.NOT_VERIFIED.format(subject=subject))
    for name, connection in _urls(settings.wisphub, list(settings.targets)):
        if connection.url.startswith("http://"):
            warnings.append(phrases.PLAIN_HTTP.format(name=name))
    return warnings


@dataclass(frozen=True)
class HistoryLimits:
    """How much history Redis keeps: events per client, for how long after a client's last
    event, for how many clients at most (the least recently active go first), and how many
    full-reconcile reports."""

    per_client: int = defaults.HISTORY_PER_CLIENT
    days: int = defaults.HISTORY_DAYS
    clients: int = defaults.HISTORY_CLIENTS
    reconcile_reports: int = defaults.RECONCILE_REPORTS


@dataclass(frozen=True)
class RedisTls:
    """TLS to the sentinels and to the master and replicas (`REDIS_TLS`). Their certificates
    are always checked, against the system's authorities and `ca_file`; `cert_file` and
    `key_file` are the service's own, for a Redis with `tls-auth-clients`."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class RedisSentinel:
    """Where Redis Sentinel is asked for the master of the queue's Redis (`REDIS_SENTINELS`),
    used instead of `REDIS_URL`: after a failover every process finds the new master."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    db: int = 0
    # None: plain TCP to the sentinels and to Redis.
    tls: RedisTls | None = None


@dataclass(frozen=True)
class ServiceSettings:
    """What the web, worker and scheduler processes need besides the engine's settings."""

    # may hold a password; no default: say which Redis (None: `redis_sentinel` says)
    redis_url: str | None = field(repr=False)
    redis_sentinel: RedisSentinel | None = None
    # A 202 waits for the queued job to reach this many replicas (`service.durability`).
    redis_wait_replicas: int = 0
    redis_wait_ms: int = defaults.REDIS_WAIT_MS
    webhook_secret: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    allow_unauthenticated: bool = False
    poll_interval: int = defaults.POLL_INTERVAL
    # The poller compares WispHub with the BQN's own lists every this many passes.
    poll_bqn_every: int = defaults.POLL_BQN_EVERY
    plan_refresh_interval: int = defaults.PLAN_REFRESH_INTERVAL
    reconcile_cron: str = defaults.RECONCILE_CRON
    reconcile_on_start: bool = True
    queue_name: str = defaults.QUEUE_NAME
    # RQ worker processes the worker command runs (its `--processes` overrides it).
    worker_processes: int = defaults.WORKER_PROCESSES
    # Flask-Limiter rates per source address; None is off.
    webhook_rate_limit: str | None = defaults.WEBHOOK_RATE_LIMIT
    login_rate_limit: str | None = defaults.LOGIN_RATE_LIMIT
    trusted_proxies: int = 0
    # The status page's cookie is always `Secure` (else only over https).
    session_cookie_secure: bool = False
    # The status page's overview reloads itself every so many seconds (0: never).
    status_refresh_seconds: int = defaults.STATUS_REFRESH_SECONDS
    # The pages' language (`es`, `en`); None: the browser's (service/i18n.py).
    ui_language: str | None = None
    # The process's zone (`TZ`, such as `America/Bogota`), for times on the pages.
    time_zone: str | None = None
    # Client jobs waiting beyond which notifications and API calls answer 503.
    max_queued_jobs: int = defaults.MAX_QUEUED_JOBS
    # Clients one batch job syncs at most (1: a job per client).
    batch_size: int = defaults.BATCH_SIZE
    # Seconds before each retry of a job that failed transiently.
    retry_intervals: tuple[int, ...] = defaults.RETRY_INTERVALS
    # A target's breaker opens after this many failed runs in a row, for so many seconds.
    breaker_failures: int = defaults.BREAKER_FAILURES
    breaker_open_seconds: int = defaults.BREAKER_OPEN_SECONDS
    # How far ahead a temporary override's `until` may be, in days.
    override_max_days: int = defaults.OVERRIDE_MAX_DAYS
    history: HistoryLimits = field(default_factory=HistoryLimits)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServiceSettings:
        """Read and validate the service settings; raise `ConfigError` naming a bad one."""
        read = _Reader(env)
        redis_url, sentinel = _redis(read)
        settings = cls(
            redis_url=redis_url,
            redis_sentinel=sentinel,
            redis_wait_replicas=read.integer(
                "REDIS_WAIT_REPLICAS",
                defaults.REDIS_WAIT_REPLICAS_SENTINEL if sentinel else 0,
                0,
                defaults.REDIS_WAIT_MAX_REPLICAS,
            ),
            redis_wait_ms=read.integer("REDIS_WAIT_MS", cls.redis_wait_ms, 1, 60_000),
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
            worker_processes=read.integer(
                "WORKER_PROCESSES", cls.worker_processes, 1, defaults.WORKER_MAX_PROCESSES
            ),
            webhook_rate_limit=read.rate("WEBHOOK_RATE_LIMIT", defaults.WEBHOOK_RATE_LIMIT),
            login_rate_limit=read.rate("LOGIN_RATE_LIMIT", defaults.LOGIN_RATE_LIMIT),
            trusted_proxies=read.integer("TRUSTED_PROXIES", cls.trusted_proxies, 0, 10),
            session_cookie_secure=read.flag("SESSION_COOKIE_SECURE", default=False),
            status_refresh_seconds=read.integer(
                "STATUS_REFRESH_SECONDS", cls.status_refresh_seconds, 0, 3600
            ),
            ui_language=read.optional_choice("UI_LANGUAGE", defaults.UI_LANGUAGES),
            time_zone=read.optional("TZ"),
            max_queued_jobs=read.integer("MAX_QUEUED_JOBS", cls.max_queued_jobs, 1, 10_000_000),
            batch_size=read.integer("BATCH_SIZE", cls.batch_size, 1, 10_000),
            retry_intervals=read.seconds_list("RETRY_INTERVALS", cls.retry_intervals),
            breaker_failures=read.integer("BREAKER_FAILURES", cls.breaker_failures, 1, 1000),
            breaker_open_seconds=read.integer(
                "BREAKER_OPEN_SECONDS", cls.breaker_open_seconds, 0, 3600
            ),
            override_max_days=read.integer("OVERRIDE_MAX_DAYS", cls.override_max_days, 1, 366),
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


def _redis(read: _Reader) -> tuple[str | None, RedisSentinel | None]:
    """`REDIS_URL`, or the Sentinel settings when `REDIS_SENTINELS` is set; never both, which
    would leave one of them silently unused."""
    listed = read.optional("REDIS_SENTINELS")
    if listed is None:
        _sentinel_only(read, "REDIS_SENTINEL_MASTER")
        _sentinel_only(read, "REDIS_SENTINEL_PASSWORD")
        _sentinel_only(read, "REDIS_PASSWORD", " (put it in REDIS_URL: redis://:password@host/0)")
        _sentinel_only(read, "REDIS_DB", " (put it in REDIS_URL: redis://host:6379/1)")
        rediss = " (with REDIS_URL, TLS is rediss://: docs/configuration.md)"
        _sentinel_only(read, "REDIS_TLS", rediss)
        _sentinel_only(read, "REDIS_TLS_CA_FILE", rediss)
        _sentinel_only(read, "REDIS_TLS_CERT_FILE", rediss)
        _sentinel_only(read, "REDIS_TLS_KEY_FILE", rediss)
        url = read.required("REDIS_URL", "the Redis of the queue, such as redis://127.0.0.1:6379/0")
        return url, None
    if read.optional("REDIS_URL") is not None:
        raise ConfigError(
            "REDIS_URL and REDIS_SENTINELS are both set: keep one (with REDIS_SENTINELS the "
            "sentinels name the master)"
        )
    return None, RedisSentinel(
        sentinels=tuple(_sentinel_address(item) for item in listed.split(",")),
        master=read.required(
            "REDIS_SENTINEL_MASTER", "the name the sentinels monitor, such as wisphub"
        ),
        password=read.optional("REDIS_PASSWORD"),
        sentinel_password=read.optional("REDIS_SENTINEL_PASSWORD"),
        db=read.integer("REDIS_DB", 0, 0, defaults.REDIS_MAX_DB),
        tls=_redis_tls(read),
    )


def _redis_tls(read: _Reader) -> RedisTls | None:
    """`REDIS_TLS` and its files, each loaded now: a missing or wrong one is one line at start,
    not every connection failing later. A file without `REDIS_TLS` would be silently unused."""
    files = {
        "REDIS_TLS_CA_FILE": read.optional("REDIS_TLS_CA_FILE"),
        "REDIS_TLS_CERT_FILE": read.optional("REDIS_TLS_CERT_FILE"),
        "REDIS_TLS_KEY_FILE": read.optional("REDIS_TLS_KEY_FILE"),
    }
    on = read.flag("REDIS_TLS", default=False)
    for name, path in files.items():
        if path is not None and not on:
            raise ConfigError(f"{name} is set but REDIS_TLS is not on")
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{name}: no such file {path!r}")
    if not on:
        return None
    tls = RedisTls(*files.values())
    if tls.key_file is not None and tls.cert_file is None:
        raise ConfigError("REDIS_TLS_KEY_FILE is set but REDIS_TLS_CERT_FILE is not")
    context = ssl.create_default_context()
    try:  # ssl.SSLError is an OSError, as is a file the service may not read
        if tls.ca_file is not None:
            context.load_verify_locations(cafile=tls.ca_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"REDIS_TLS_CA_FILE: {tls.ca_file!r} gives no CA certificate: {exc}"
        ) from None
    try:
        if tls.cert_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except OSError as exc:
        raise ConfigError(
            f"REDIS_TLS_CERT_FILE: {tls.cert_file!r} and REDIS_TLS_KEY_FILE (or a key in the same "
            f"file) give no certificate with its private key: {exc}"
        ) from None
    return tls


def _sentinel_only(read: _Reader, name: str, hint: str = "") -> None:
    """Refuse a setting of Sentinel's without REDIS_SENTINELS: it would be silently unused."""
    if read.optional(name) is not None:
        raise ConfigError(f"{name} is set but REDIS_SENTINELS is not{hint}")


def _sentinel_address(item: str) -> tuple[str, int]:
    """`host`, `host:port` or `[v6]:port` of one sentinel (26379 by default)."""
    text = item.strip()
    problem = ConfigError(f"REDIS_SENTINELS: {text!r} is not host:port (a comma-separated list)")
    parts = urlsplit(f"redis://{text}")
    try:
        port = parts.port or defaults.SENTINEL_PORT
    except ValueError:
        raise problem from None
    if not parts.hostname or parts.path or parts.username or parts.query or parts.fragment:
        raise problem
    return parts.hostname, port


@dataclass(frozen=True)
class WebServer:
    """Where gunicorn serves the web process, and with how many processes
    (`service.gunicorn_conf`)."""

    host: str = defaults.WEB_HOST
    port: int = defaults.WEB_PORT
    processes: int = defaults.WEB_PROCESSES

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebServer:
        """Read `WEB_HOST`, `PORT` and `WEB_CONCURRENCY`; raise `ConfigError` naming a bad one."""
        read = _Reader(env)
        host = read.text("WEB_HOST", cls.host)
        if not _is_host(host):
            raise ConfigError(f"WEB_HOST must be an IP address or a host name, not {host!r}")
        return cls(
            host=host,
            port=read.integer("PORT", cls.port, 1, 65535),
            processes=read.integer("WEB_CONCURRENCY", cls.processes, 1, 64),
        )

    @property
    def bind(self) -> str:
        """gunicorn's `bind`: `host:port`, an IPv6 address in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _is_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        labels = value.split(".")
        # a last label of digits is a mistyped address (`0`, `10.0.0`), never a name
        return not labels[-1].isdigit() and all(
            label.isascii() and label.replace("-", "").isalnum() for label in labels
        )
    return True


REDACTED = "***"


def redacted(settings: Any) -> dict[str, Any]:
    """A settings dataclass as a JSON-ready dict for debugging: every secret (the fields kept
    out of `repr`) is replaced by `***`, or for a URL (`REDIS_URL`) its password and the values
    of its query (`?password=...`) only."""
    result: dict[str, Any] = {}
    for item in fields(settings):
        value = getattr(settings, item.name)
        if hasattr(value, "to_dict"):  # a target's selector
            result[item.name] = value.to_dict()
        elif is_dataclass(value):
            result[item.name] = redacted(value)
        elif isinstance(value, tuple) and value and all(is_dataclass(v) for v in value):
            result[item.name] = [redacted(v) for v in value]
        elif not item.repr and isinstance(value, str) and "://" in value:
            result[item.name] = _without_secrets(value)
        elif not item.repr:
            result[item.name] = REDACTED if value else value
        else:
            result[item.name] = list(value) if isinstance(value, tuple) else value
    return result


def _without_secrets(url: str) -> str:
    """`url` with its password, every value of its query and its fragment replaced by `***`
    (redis-py reads `?password=` too; no query value is needed to tell which server it is)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = f"{parts.username}:" if parts.username else ":"
        netloc = f"{user}{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    names = [item.split("=", 1)[0] for item in parts.query.split("&") if item]
    query = "&".join(f"{name}={REDACTED}" for name in names)
    # Put together by hand: urlunsplit would turn `unix:///path` into `unix:/path`.
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{REDACTED}" if parts.fragment else "")
    )


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

    def connection(self, prefix: str, **fixed: Any) -> Connection:
        """One API's connection: what both APIs have is read under `prefix` (`WISPHUB_TIMEOUT`,
        `BQN_TIMEOUT`, ...), with the defaults named alike (`defaults.WISPHUB_READ_TIMEOUT`)."""

        def default(name: str) -> Any:
            return getattr(defaults, f"{prefix}_{name}")

        most = default("MAX_CONCURRENCY")
        return Connection(
            ca_bundle=self.optional(f"{prefix}_CA_BUNDLE"),
            connect_timeout=default("CONNECT_TIMEOUT"),
            read_timeout=self.number(f"{prefix}_TIMEOUT", default("READ_TIMEOUT")),
            retries=self.integer(f"{prefix}_RETRIES", default("RETRIES"), 0, 10),
            backoff=self.number(f"{prefix}_BACKOFF", default("BACKOFF")),
            concurrency=self.integer(f"{prefix}_CONCURRENCY", default("CONCURRENCY"), 1, most),
            **fixed,
        )

    def rate(self, name: str, default: str) -> str | None:
        """A rate limit in Flask-Limiter's notation, or None for `off`."""
        value = self.text(name, default)
        return None if value.lower() == "off" else value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        return self.optional_choice(name, choices) or default

    def optional_choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        """One of `choices`, or None when unset."""
        value = self.optional(name)
        if value is not None and value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value


def _suspended_rate(read: _Reader) -> tuple[int, int]:
    """SUSPENDED_RATE (`256k/128k`: download/upload, as WispHub writes plan speeds) in kbps;
    required with SUSPENDED_ACTION=throttle, unused with block."""
    if read.optional("SUSPENDED_ACTION") != THROTTLE:
        return (0, 0)
    raw = read.required("SUSPENDED_RATE", "SUSPENDED_ACTION=throttle needs it, such as 256k/128k")
    down, slash, up = raw.partition("/")
    try:
        if not slash:
            raise SpeedError("no /")
        return (parse_speed(down.strip()), parse_speed(up.strip()))
    except SpeedError:
        raise ConfigError(
            f"SUSPENDED_RATE must be download/upload speeds such as 256k/128k, not {raw!r}"
        ) from None


def _location_groups(read: _Reader) -> tuple[str, ...]:
    """LOCATION_GROUPS: which of zona, router, sectorial make location groups, in order."""
    raw = read.optional("LOCATION_GROUPS") or ""
    fields = tuple(field.strip().lower() for field in raw.split(",") if field.strip())
    unknown = [field for field in fields if field not in LOCATION_FIELDS]
    if unknown or len(set(fields)) != len(fields):
        raise ConfigError(
            f"LOCATION_GROUPS must list some of {', '.join(LOCATION_FIELDS)} once each, "
            f"separated by commas, not {raw!r}"
        )
    return fields


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
    return f"{scheme}://{host}:{port or defaults.BQN_PORT}{path or '/api/v1'}"
