"""Every default time, TTL, interval and limit, in one place, each with what it bounds.

A value that depends on another is computed from it here, never repeated. Settings read from
the environment (docs/configuration.md) take their defaults from this module; the rest are
fixed. Times are in seconds unless the name says otherwise.
"""

from __future__ import annotations

from math import ceil

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# --- WispHub API (WISPHUB_*) -----------------------------------------------------------------
# The two APIs' defaults are named alike (`<API>_READ_TIMEOUT`): settings.py reads them by prefix.
WISPHUB_URL = "https://api.wisphub.net"
# Clients per page of a list read; WispHub serves at most a few hundred quickly.
WISPHUB_PAGE_SIZE = 500
WISPHUB_CONNECT_TIMEOUT = 3.05
WISPHUB_READ_TIMEOUT = 8.0
# Retries of one request (connection errors, 429, 5xx) with exponential backoff.
WISPHUB_RETRIES = 4
WISPHUB_BACKOFF = 0.5
# Requests in flight at once (pages of a pass, client reads of a reconcile).
WISPHUB_CONCURRENCY = 4
WISPHUB_MAX_CONCURRENCY = 16
# Times a whole list pass is read again when clients move between pages while it is read.
WISPHUB_PASS_ATTEMPTS = 3

# The longest wait between two retries of one request, whatever the backoff or Retry-After.
HTTP_BACKOFF_MAX_SECONDS = 30

# --- BQN REST API (BQN_*) --------------------------------------------------------------------
BQN_PORT = 3443
BQN_CONNECT_TIMEOUT = 5.0
BQN_READ_TIMEOUT = 20.0
BQN_RETRIES = 3
BQN_BACKOFF = 0.5
# Writes in flight at once; the BQN's REST server answers a few dozen in parallel.
BQN_CONCURRENCY = 8
BQN_MAX_CONCURRENCY = 64
# Bequant's own client relaxes the cipher list because some BQN releases fail the TLS handshake
# with OpenSSL's defaults (docs/bqn-api.md, "Relaxed ciphers").
BQN_CIPHERS = "DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK"
# Transient failures in a row after which the remaining BQN writes are not attempted.
BQN_GIVE_UP_AFTER = 5
# How long a rate policy read from the BQN is trusted before it is read again.
POLICY_CACHE_SECONDS = 5 * MINUTE

# --- Mapping WispHub clients to BQN subscribers -----------------------------------------------
SUBSCRIBER_ID_FIELD = "nombre"
BLOCK_POLICY = "Wisphub_block"
# The rate policy suspended clients get with SUSPENDED_ACTION=throttle.
THROTTLE_POLICY = "Wisphub_throttle"
# How many subscriber groups the BQN lets one address be in, besides `all-subscribers` (3 on
# older releases, up to 7 on newer ones): location groups beyond it are left out.
GROUPS_PER_IP = 3
IPV6_PREFIX = 64
MULTI_IP_MODE = "group"
# With MULTI_IP_MODE=subscribers, a block is expanded into at most this many subscribers.
MAX_SUBSCRIBERS_PER_CLIENT = 256
# Temporary overrides (`POST /api/v1/clients/<id>/override`): how far ahead `until` may be, the
# prefix of a rate override's own policy, and the longest `reason` kept.
OVERRIDE_MAX_DAYS = 31
OVERRIDE_POLICY_PREFIX = "Wisphub_override_"
OVERRIDE_REASON_CHARS = 200

# --- Deletion guard (MAX_DELETE_FRACTION, DELETE_GUARD_FLOOR) ----------------------------------
MAX_DELETE_FRACTION = 0.10
DELETE_GUARD_FLOOR = 10

# --- Jobs: how long each may run, how long RQ keeps its result and its failure -----------------
# A job may run as long as its API calls can take at worst (a dead worker's job does not wait
# for its timeout: see JOB_HEARTBEAT_TTL). One call at worst: every try, the first and each
# retry, connects and reads until its timeouts, with urllib3's backoff between tries (none
# before the first retry, then BACKOFF x 2^(n-1) and up to BACKOFF of jitter before the nth),
# each wait at most HTTP_BACKOFF_MAX_SECONDS. A server's Retry-After may make a wait longer: a
# job slowed that much runs out of time and runs again later (RESTART_DELAYS).


def _worst_call(connect: float, read: float, retries: int, backoff: float) -> float:
    """Seconds one request may take through all its retries."""
    waits = sum(
        min(HTTP_BACKOFF_MAX_SECONDS, backoff * 2 ** (n - 1) + backoff)
        for n in range(2, retries + 1)
    )
    return (connect + read) * (retries + 1) + waits


# 63.75 s and 104 s with the defaults above.
WISPHUB_CALL_SECONDS = _worst_call(
    WISPHUB_CONNECT_TIMEOUT, WISPHUB_READ_TIMEOUT, WISPHUB_RETRIES, WISPHUB_BACKOFF
)
BQN_CALL_SECONDS = _worst_call(BQN_CONNECT_TIMEOUT, BQN_READ_TIMEOUT, BQN_RETRIES, BQN_BACKOFF)
# How long a job waits for a client or address another job holds before retrying later.
LOCK_WAIT_SECONDS = MINUTE
# A job waits for up to three locks another job holds: the client's, then its addresses' (held,
# then widened to the addresses the client has now).
_LOCK_WAITS = 3 * LOCK_WAIT_SECONDS
# A client job reads WispHub and the BQN at once, then writes the BQN in up to three phases
# (policies, subscribers, group), each phase's calls in parallel: 596 s with the defaults.
CLIENT_JOB_TIMEOUT = ceil(
    _LOCK_WAITS + max(WISPHUB_CALL_SECONDS, BQN_CALL_SECONDS) + 3 * BQN_CALL_SECONDS
)
# Clients one batch job syncs at most (BATCH_SIZE): a request naming more (a poll pass, a
# notification with many ids) is split evenly, so that several workers share a cut-off day's
# changes while each batch keeps BQN_CONCURRENCY writes in flight. 1: a job per client.
BATCH_SIZE = 250


def batch_job_timeout(clients: int) -> int:
    """How long a batch job of `clients` may run: it makes a client job's calls for each of
    its clients, `<API>_CONCURRENCY` at a time, so each phase is ceil(clients / concurrency)
    rounds, each round as long as one try (a slow API that still answers), and the calls that
    fail through all their retries add a client job's worst case (the BQN writes stop after
    BQN_GIVE_UP_AFTER transient failures in a row)."""
    wisphub_rounds = ceil(clients / WISPHUB_CONCURRENCY) * (
        WISPHUB_CONNECT_TIMEOUT + WISPHUB_READ_TIMEOUT
    )
    bqn_rounds = ceil(clients / BQN_CONCURRENCY) * (BQN_CONNECT_TIMEOUT + BQN_READ_TIMEOUT)
    return ceil(CLIENT_JOB_TIMEOUT + max(wisphub_rounds, bqn_rounds) + 3 * bqn_rounds)


# 3,796 s for the default BATCH_SIZE; each batch is queued with the timeout of its own size.
BATCH_JOB_TIMEOUT = batch_job_timeout(BATCH_SIZE)
RECONCILE_JOB_TIMEOUT = 3 * HOUR
POLL_JOB_TIMEOUT = 10 * MINUTE
PLANS_JOB_TIMEOUT = 10 * MINUTE
CLIENT_RESULT_TTL = DAY
RECONCILE_RESULT_TTL = 30 * DAY
# The poller runs every POLL_INTERVAL: an hour of its results is plenty.
POLL_RESULT_TTL = HOUR
PLANS_RESULT_TTL = DAY
FAILURE_TTL = 30 * DAY
# RQ's own retries, spent only when a worker dies mid-job or on an unexpected error.
RESTART_DELAYS = (5, MINUTE, 5 * MINUTE)
# Delays before each retry of a job that failed transiently (RETRY_INTERVALS): 74 minutes.
RETRY_INTERVALS = (5, 15, 30, 60, 120, 300, 600, 900, 1200, 1200)

# --- Claims and locks in Redis ----------------------------------------------------------------
# A client's claim ("a job for it waits") outlives any wait for its job, its retries included;
# a stale claim is replaced anyway.
PENDING_TTL = DAY
# How long the rows a poll pass read wait for their batch job (past it, the job reads them again).
BATCH_ROWS_SECONDS = 10 * MINUTE
# A job that should run now is moved forward only when due later than this.
EXPEDITE_MARGIN_SECONDS = 5
# A lock held by a running job lasts this long, renewed while the job runs (its heartbeat, or a
# thread: `worker.queue.liveness`): the lock of a job whose worker died, or whose Redis failed
# over under it, lets go within it.
LIVE_LOCK_SECONDS = MINUTE
# A client's lock and its addresses' locks: renewed by the job's heartbeat.
CLIENT_LOCK_SECONDS = LIVE_LOCK_SECONDS
ADDRESS_LOCK_SECONDS = CLIENT_LOCK_SECONDS
# A reconcile reads again which clients jobs applied meanwhile (their writes are left to them)
# at most this often.
TOUCHED_READ_SECONDS = 1.0
RECONCILE_LOCK_SECONDS = LIVE_LOCK_SECONDS

# A target whose BQN failed this many runs in a row (every job's, across workers) is skipped
# for BREAKER_OPEN_SECONDS, its work retried later (`worker.queue.breaker`).
BREAKER_FAILURES = 3
BREAKER_OPEN_SECONDS = 30
# A poll that outlived its lock is one RQ has stopped: a poll may start again.
POLL_LOCK_SECONDS = POLL_JOB_TIMEOUT
# How long a pass waits for another to finish writing the location groups before leaving them
# to the next pass.
LOCATIONS_WAIT_SECONDS = 30
# Tries of a reconcile's bookkeeping when jobs record what they applied meanwhile.
REMEMBER_ATTEMPTS = 5
# A plan no catalogue lists is looked for again at most this often.
PLAN_LOOKUP_SECONDS = MINUTE
# A claim whose job failed for good is left to the failures list this long.
FAILED_MARK_SECONDS = HOUR

# --- Workers ----------------------------------------------------------------------------------
# Worker processes the worker command runs (WORKER_PROCESSES). A job spends most of its time
# waiting on WispHub and the BQN (about 50 ms a client at 20 ms a request, a few ms of it on
# the CPU), more when the machine is busy: measured on two cores (bench/README.md), 8 kept up
# with 50 notifications/s but fell behind at 100/s (p99 1.4 s), 12 kept up (p99 90 ms).
WORKER_PROCESSES = 12
WORKER_MAX_PROCESSES = 64
# A running job's place in RQ's started registry lasts JOB_HEARTBEAT_TTL, renewed every
# JOB_HEARTBEAT_SECONDS while it runs (five missed renewals are forgiven): a job whose worker
# died is seen abandoned this long after, instead of after its whole timeout.
JOB_HEARTBEAT_SECONDS = 5
JOB_HEARTBEAT_TTL = 6 * JOB_HEARTBEAT_SECONDS
# How often a worker does RQ's maintenance (requeueing abandoned jobs, cleaning registries): a
# job abandoned by a worker that lives on (it lost Redis mid-job: a failover) runs again within
# JOB_HEARTBEAT_TTL + RQ's own minute of grace + this + RESTART_DELAYS[0], about 105 s; one
# whose worker died is requeued sooner, by the pool that replaces the worker.
WORKER_MAINTENANCE_SECONDS = 10
# An idle RQ worker waits on the queue for its TTL less 15 s and only then looks at the
# maintenance: the TTL follows the interval (its registration lapses a minute later).
WORKER_TTL_SECONDS = WORKER_MAINTENANCE_SECONDS + 15

# --- The scheduler (one leader among several) ------------------------------------------------
# The leader's lock, renewed from a thread every third of it while the scheduler lives: a
# standby (trying every SCHEDULER_STANDBY_RETRY_SECONDS) takes over within about 35 s of its
# death (it took 143 s when only the cron loop's beats, up to a minute apart, renewed it).
SCHEDULER_LEADER_SECONDS = 30
SCHEDULER_STANDBY_RETRY_SECONDS = 5
POLL_INTERVAL = MINUTE
POLL_BQN_EVERY = 1
PLAN_REFRESH_INTERVAL = 15 * MINUTE
RECONCILE_CRON = "0 3 * * *"

# --- History, runs and charts ------------------------------------------------------------------
HISTORY_PER_CLIENT = 50
HISTORY_DAYS = 30
HISTORY_CLIENTS = 20_000
RECONCILE_REPORTS = 30
# Items of a long list (failures, operations) kept in a stored run; the rest are counted.
RUN_LIST_ITEMS = 50
CHART_HOURS = 24
# Operation counts per hour are kept for the chart, and a day more.
HOURLY_COUNTS_SECONDS = CHART_HOURS * HOUR + DAY

# --- The web service --------------------------------------------------------------------------
QUEUE_NAME = "wisphub-bqn-sync"
# Where the web process listens (WEB_HOST, PORT): this machine only, unless a proxy or a container
# needs it on every interface (WEB_HOST=0.0.0.0).
WEB_HOST = "127.0.0.1"
WEB_PORT = 8000
# gunicorn processes (WEB_CONCURRENCY), each holding up to this many connections at once: gevent
# reads every request asynchronously, so slow senders wait without taking a thread from the rest.
WEB_PROCESSES = 2
WEB_CONNECTIONS = 1000
# A signed notification whose timestamp is older (or newer) than this is refused.
MAX_SIGNATURE_AGE_SECONDS = 5 * MINUTE
# Client ids one notification may name.
MAX_IDS = 1000
# Notifications carry ids, not documents: 64 KiB holds 1,000 ids in any accepted shape.
MAX_BODY_BYTES = 64 * 1024
# How long the web process waits for Redis before answering 503.
REDIS_TIMEOUT_SECONDS = 2
# Redis connections one web process may hold; a request waits REDIS_TIMEOUT_SECONDS for one.
WEB_REDIS_CONNECTIONS = 64
# An idle Redis connection of the web process is checked before use after this long.
REDIS_HEALTH_CHECK_SECONDS = 30
# With Redis Sentinel: the port a sentinel listens on when REDIS_SENTINELS gives none.
SENTINEL_PORT = 26379
# A 202 waits this long (REDIS_WAIT_MS) for the queued job to reach REDIS_WAIT_REPLICAS
# replicas, which is 1 by default with Sentinel (0: no wait, a single Redis).
REDIS_WAIT_MS = 500
REDIS_WAIT_REPLICAS_SENTINEL = 1
REDIS_WAIT_MAX_REPLICAS = 16
# The highest database number REDIS_DB takes (Redis' own `databases` is 16 by default).
REDIS_MAX_DB = 1023
# What a 503 tells the sender when Redis is unreachable or no replica acknowledged in time
# (`Retry-After`): a failover takes seconds.
REDIS_RETRY_AFTER_SECONDS = 5
# A process that lost Redis (a failover) tries it again after this long.
REDIS_RECONNECT_SECONDS = 1
STATUS_SESSION_HOURS = 12
# The status page's overview reloads itself this often (STATUS_REFRESH_SECONDS; 0: never), by
# the `Refresh` header: the page runs no scripts.
STATUS_REFRESH_SECONDS = 10
# The overview shows each plan's policy state on each BQN read at most this often per web
# process, each BQN given this long to answer, once (a BQN down slows one refresh a minute
# by seconds, not every refresh by BQN_CALL_SECONDS).
STATUS_PLANS_SECONDS = MINUTE
STATUS_BQN_TIMEOUT = 3.0
# Events of a client's history its page shows (HISTORY_PER_CLIENT keeps 50 by default).
STATUS_HISTORY_SHOWN = 100
# The pages' languages (UI_LANGUAGE): English is the messages' own, Spanish is translated
# (service/translations). The first is given to a browser that asks for none of them.
UI_LANGUAGES = ("es", "en")
FAILURES_SHOWN = 50
# A client search (`GET /api/v1/clients?q=`) answers this many hits unless told (`limit`), at
# most the second; longer texts than the third are refused (no name, IP or cédula is as long).
SEARCH_HITS = 20
SEARCH_MAX_HITS = 100
SEARCH_MAX_CHARS = 100
# Failures cleared lately (resolved by a later job, or dismissed) kept for the list and the page.
FAILURES_CLEARED_KEPT = 10

# --- The web process's doors (docs/security.md) -----------------------------------------------
# Notifications per sender address that passed authentication (Flask-Limiter notation).
WEBHOOK_RATE_LIMIT = "1200/minute"
# Sign-in attempts per address at the status page (right or wrong: a guess cannot be told apart
# before it is checked).
LOGIN_RATE_LIMIT = "10/minute"
# Client jobs waiting in the queue beyond which notifications and API calls answer 503 (a job
# takes about 6 KB of Redis: 20,000 of them about 120 MB).
MAX_QUEUED_JOBS = 20_000
# Room reserved for a request's jobs is given back after this long if its web process dies.
QUEUE_RESERVATION_SECONDS = MINUTE
# A sender told 503 for a full queue tries again after this long.
QUEUE_FULL_RETRY_SECONDS = 30
# Shortest accepted WEBHOOK_SECRET and API_TOKEN.
MIN_SECRET_LENGTH = 16
# A signed notification is refused when seen again within this long (its signature is kept).
REPLAY_WINDOW_SECONDS = 2 * MAX_SIGNATURE_AGE_SECONDS
