"""Typed errors shared by every client and sync module.

The one question the queue needs answered about a failure is "will trying again help?".
`RetryableError` says yes (network trouble, 5xx, 429, a busy lock); `PermanentError`
says no (bad input, 4xx, a missing record). Handlers re-raise both so the queue records
them, but only retryable ones are worth the queue's retries; sync logic marks permanent
failures as `failed` with the reason before raising.
"""

from __future__ import annotations


class IntegrationError(Exception):
    """Base of every error raised by the service layer."""

    retryable: bool = False


class RetryableError(IntegrationError):
    """A failure that may go away by itself: try again later."""

    retryable = True


class PermanentError(IntegrationError):
    """A failure that will not go away by retrying: fix the input or the data."""

    retryable = False


class ConfigError(PermanentError):
    """The environment is missing or has malformed settings."""


class ValidationError(PermanentError):
    """Input (a webhook payload, a record) does not have the shape we need."""


class LockBusyError(RetryableError):
    """Another worker holds the entity's lock: raise so the queue retries later."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Lock busy for {key}, retry later")
        self.key = key


class ApiError(IntegrationError):
    """An external API answered with an error status.

    `reason` carries the API's own explanation (EspoCRM's `X-Status-Reason` header,
    an error body's message); `retry_after` is the server's `Retry-After` in seconds.
    """

    def __init__(
        self,
        service: str,
        status: int,
        reason: str = "",
        *,
        method: str = "",
        url: str = "",
        retry_after: float | None = None,
        body: str = "",
    ) -> None:
        self.service = service
        self.status = status
        self.reason = reason
        self.method = method
        self.url = url
        self.retry_after = retry_after
        self.body = body
        where = f" {method} {url}" if method else ""
        text = f": {reason}" if reason else ""
        super().__init__(f"{service} answered {status}{where}{text}")

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return is_retryable_status(self.status)


class ApiConnectionError(RetryableError):
    """The API could not be reached (refused, reset, DNS, TLS) or timed out."""

    def __init__(self, service: str, message: str, *, timeout: bool = False) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.timeout = timeout


class NotFoundError(ApiError):
    """404 from an API: the record does not exist (any more)."""


class AuthError(ApiError):
    """401/403 from an API after any refresh we could do."""


class ConflictError(ApiError):
    """409 from an API (duplicate, or concurrent modification)."""


RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})  # 429 = RATE_LIMITED_STATUS
PERMANENT_SERVER_STATUSES = frozenset({501, 505})
"""Server errors that say "this will never work" (not implemented, HTTP version)."""


def is_retryable_status(status: int) -> bool:
    """Statuses worth retrying: timeouts, rate limits and server errors (but 501/505)."""
    if status in PERMANENT_SERVER_STATUSES:
        return False
    return status in RETRYABLE_STATUSES or status >= 500


def api_error_for(
    service: str,
    status: int,
    reason: str = "",
    **kwargs: object,
) -> ApiError:
    """The most specific ApiError subclass for a status."""
    cls: type[ApiError] = ApiError
    if status == 404:
        cls = NotFoundError
    elif status in (401, 403):
        cls = AuthError
    elif status == 409:
        cls = ConflictError
    return cls(service, status, reason, **kwargs)  # type: ignore[arg-type]


RATE_LIMITED_STATUS = 429


def is_rate_limited(exc: BaseException) -> bool:
    """Whether the API said "too many requests" (429): a signal to slow down, not a fault of
    the request, so retries of it are bounded by time rather than by attempts (retry.py)."""
    return isinstance(exc, ApiError) and exc.status == RATE_LIMITED_STATUS


def is_retryable(exc: BaseException) -> bool:
    """Whether an exception is worth another attempt."""
    if isinstance(exc, IntegrationError):
        return bool(exc.retryable)
    # Unknown errors from libraries: treat low-level network trouble as transient.
    import asyncio

    import aiohttp

    return isinstance(
        exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError, ConnectionError)
    )
