"""The errors the sync raises, sorted by what the caller should do about them."""


class SyncError(Exception):
    """Base of every error the sync engine raises on purpose."""


class ConfigError(SyncError):
    """Wrong settings, credentials or host: retrying will not help, a person must fix it."""


class ApiError(SyncError):
    """An API answered something the sync cannot use (a 4xx, a body that is not what was asked)."""


class FilterIgnored(ApiError):
    """WispHub ignored a filter and answered rows other than the one asked for."""


class TransientError(SyncError):
    """A timeout, connection error, 5xx or 429 that outlasted the client's retries; try later."""


class Unavailable(TransientError):
    """An API did not answer, or answered 5xx or 429, after the client's retries: what a
    target's circuit breaker counts (`service` says which API)."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.service = service


class WriteConflict(TransientError):
    """The BQN refused a write for another entry in its way (409), as when a client moves and
    its old entry goes in the same step: tried again later, once that is done. Not a sign the
    BQN is down (no breaker counts it)."""


class IncompletePass(TransientError):
    """A WispHub list pass did not finish; its rows must not be used to compute deletions."""
