"""How to reach one HTTP API: the one settings shape the WispHub and BQN clients both take,
and the hook through which a caller learns how each request went (for its metrics)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# (service, operation, status, seconds): called once per request, from any thread. The status
# is the HTTP code as text, or "error" when no answer came.
RequestHook = Callable[[str, str, str, float], None]


def unobserved(service: str, operation: str, status: str, seconds: float) -> None:
    """The hook of a caller that keeps no metrics (the one-shot CLI)."""


@dataclass(frozen=True)
class Connection:
    """Where an API is and how to talk to it. WispHub authenticates with a key (`secret`
    alone), the BQN with a REST user and password; only the BQN relaxes its ciphers and skips
    the hostname check (its certificate rarely names its management address)."""

    url: str
    connect_timeout: float
    read_timeout: float
    retries: int
    backoff: float
    # Requests in flight at once; the connection pool is this big.
    concurrency: int
    user: str = ""
    secret: str = field(default="", repr=False)
    ca_bundle: str | None = None
    check_hostname: bool = True
    ciphers: str | None = None
    # Items per page of a list read; 0 for an API that does not page (the BQN).
    page_size: int = 0

    @property
    def timeout(self) -> tuple[float, float]:
        """The (connect, read) timeout of one request, as requests takes it."""
        return (self.connect_timeout, self.read_timeout)
