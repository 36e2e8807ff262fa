"""services.clients.errors: the retryable/permanent split and the status → class mapping."""

from __future__ import annotations

import aiohttp
import pytest

from services.clients.errors import (
    ApiConnectionError,
    ApiError,
    AuthError,
    ConfigError,
    ConflictError,
    IntegrationError,
    LockBusyError,
    NotFoundError,
    PermanentError,
    RetryableError,
    ValidationError,
    api_error_for,
    is_retryable,
    is_retryable_status,
)


def test_hierarchy() -> None:
    assert issubclass(RetryableError, IntegrationError) and issubclass(PermanentError, IntegrationError)
    for cls in (ConfigError, ValidationError):
        assert issubclass(cls, PermanentError)
        assert cls("x").retryable is False
    for cls in (LockBusyError, ApiConnectionError):
        assert issubclass(cls, RetryableError)
    for cls in (NotFoundError, AuthError, ConflictError):
        assert issubclass(cls, ApiError)


def test_lock_busy_error() -> None:
    err = LockBusyError("document_sync:CDokumente:abc")
    assert err.key == "document_sync:CDokumente:abc"
    assert err.retryable and is_retryable(err)
    assert "document_sync:CDokumente:abc" in str(err) and "retry later" in str(err)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 507])
def test_retryable_statuses(status: int) -> None:
    assert is_retryable_status(status)
    assert api_error_for("svc", status).retryable
    assert is_retryable(api_error_for("svc", status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 413, 422])
def test_permanent_statuses(status: int) -> None:
    assert not is_retryable_status(status)
    assert not is_retryable(api_error_for("svc", status))


@pytest.mark.parametrize(
    ("status", "cls"),
    [(404, NotFoundError), (401, AuthError), (403, AuthError), (409, ConflictError), (400, ApiError), (503, ApiError)],
)
def test_api_error_for_picks_the_most_specific_class(status: int, cls: type) -> None:
    err = api_error_for("EspoCRM", status, "why", method="GET", url="http://x/api/v1/Lead/1", retry_after=3.0, body="{}")
    assert type(err) is cls
    assert (err.service, err.status, err.reason, err.method, err.url, err.retry_after, err.body) == (
        "EspoCRM",
        status,
        "why",
        "GET",
        "http://x/api/v1/Lead/1",
        3.0,
        "{}",
    )
    assert str(err) == f"EspoCRM answered {status} GET http://x/api/v1/Lead/1: why"


def test_api_error_message_without_method_or_reason() -> None:
    assert str(ApiError("xAI", 500)) == "xAI answered 500"


def test_connection_error() -> None:
    err = ApiConnectionError("Advoware", "timed out after 30s", timeout=True)
    assert err.timeout and err.service == "Advoware" and str(err) == "Advoware: timed out after 30s"
    assert is_retryable(err)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (aiohttp.ClientConnectionError(), True),
        (aiohttp.ServerDisconnectedError(), True),
        (TimeoutError(), True),
        (ConnectionRefusedError(), True),
        (ValueError("bug"), False),
        (RuntimeError("bug"), False),
        (KeyError("k"), False),
    ],
)
def test_is_retryable_for_foreign_errors(error: BaseException, expected: bool) -> None:
    assert is_retryable(error) is expected


def test_not_implemented_and_http_version_are_permanent() -> None:
    from services.clients.errors import ApiError, is_retryable, is_retryable_status

    assert not is_retryable_status(501) and not is_retryable_status(505)
    assert is_retryable_status(500) and is_retryable_status(502) and is_retryable_status(599)
    assert not is_retryable(ApiError("x", 501))


def test_payload_error_mid_body_is_retryable() -> None:
    import aiohttp

    from services.clients.errors import is_retryable

    assert is_retryable(aiohttp.ClientPayloadError("connection dropped mid-body"))
