"""The HTTP plumbing every API client shares: one aiohttp session, timeouts,
error mapping and retries. Knows nothing of Motia.

`JsonHttpClient.request()` turns every failure into a typed error from
`services.clients.errors`: connection trouble and timeouts become `ApiConnectionError`,
error statuses become `ApiError` (subclass by status) with the server's reason
(`X-Status-Reason`, or the body's `error`/`message`) and `Retry-After`.
Retryable ones are retried by the client's `RetryPolicy`. Inside `metered(CallMeter(limit))`
every request is counted and the one past the limit refused (`CallBudgetSpent`): bounded runs
such as the operators' drift audit (services.ops) stay within a call budget.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

import aiohttp

from services.clients.errors import ApiConnectionError, ApiError, api_error_for
from services.clients.retry import DEFAULT_POLICY, RetryPolicy, parse_retry_after, retry_async

REASON_HEADER = "X-Status-Reason"


def _reason_from(body_text: str, headers: Mapping[str, str]) -> str:
    reason = headers.get(REASON_HEADER, "")
    if reason:
        return reason
    try:
        body = json.loads(body_text)
    except (ValueError, TypeError):
        return body_text[:300]
    if isinstance(body, dict):
        for key in ("error", "message", "reason", "Message"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if value:
                return str(value)[:300]
    return body_text[:300]


@contextlib.contextmanager
def connection_errors(service: str, method: str, path: str) -> Iterator[None]:
    """Map aiohttp's connection trouble and timeouts to ApiConnectionError (retryable);
    ApiErrors raised inside pass through untouched."""
    try:
        yield
    except ApiError:
        raise
    except TimeoutError as exc:
        raise ApiConnectionError(service, f"{method} {path} timed out", timeout=True) from exc
    except aiohttp.ClientError as exc:
        raise ApiConnectionError(service, f"{method} {path}: {exc}") from exc


class CallBudgetSpent(Exception):
    """A bounded run's call budget (`CallMeter.limit`) is spent: the request was not sent.
    Not an IntegrationError, so it is never retried."""


@dataclass
class CallMeter:
    """Counts the HTTP requests sent inside `metered(meter)` (per client service, every
    attempt, retries and token fetches included) and refuses the one past `limit`."""

    limit: int | None = None
    calls: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.total)

    def spend(self, service: str) -> None:
        if self.limit is not None and self.total >= self.limit:
            raise CallBudgetSpent(f"call budget of {self.limit} spent")
        self.calls[service] += 1


_METER: ContextVar[CallMeter | None] = ContextVar("bitbylaw_call_meter", default=None)


@contextlib.contextmanager
def metered(meter: CallMeter) -> Iterator[CallMeter]:
    """Count (and bound) every request the clients send in this context and the tasks it
    starts (services.ops: the drift audit and the entity view are bounded in calls)."""
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(token)


class RequestParts(TypedDict, total=False):
    """What a request may carry besides method and path (all optional): query `params`, a
    `json_body` or raw `data`, and extra `headers` (auth headers are added by the client)."""

    params: Any
    json_body: Any
    data: Any
    headers: Mapping[str, str] | None


async def error_from_response(service: str, resp: aiohttp.ClientResponse) -> ApiError:
    """Build the typed error for a non-2xx response (reads at most 64 KiB of body)."""
    try:
        raw = await resp.content.read(65536)
        text = raw.decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - body is best effort
        text = ""
    return api_error_for(
        service,
        resp.status,
        _reason_from(text, resp.headers),
        method=resp.method,
        url=str(resp.url.with_query(None)),
        retry_after=parse_retry_after(resp.headers.get("Retry-After")),
        body=text[:2000],
    )


class HttpOptions(TypedDict, total=False):
    """The transport options of every client, handed on to `JsonHttpClient` (its defaults:
    30 s total timeout, DEFAULT_POLICY, a session of its own)."""

    timeout: float
    retry_policy: RetryPolicy
    session: aiohttp.ClientSession | None


class JsonHttpClient:
    """A small async JSON client around one lazily created aiohttp session."""

    service = "http"
    follow_redirects = True
    """Whether `open_response` follows a 3xx (`allow_redirects`); a client may refuse to."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.retry_policy = retry_policy
        self._session = session
        self._owns_session = session is None

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> JsonHttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")

    async def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a request; clients override."""
        return {}

    async def on_auth_failure(self) -> bool:
        """Called once on a 401; return True to retry the request once (token refresh)."""
        return False

    @contextlib.asynccontextmanager
    async def open_response(
        self, method: str, path: str, headers: Mapping[str, str], parts: RequestParts
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request to `path` with exactly `headers` (the caller adds auth) and the
        parts' params/body; connection trouble inside the block becomes ApiConnectionError.
        Inside `metered(meter)` the request is counted first (CallBudgetSpent past its limit)."""
        meter = _METER.get()
        if meter is not None:
            meter.spend(self.service)
        session = await self._get_session()
        with connection_errors(self.service, method, path):
            async with session.request(
                method,
                self.url(path),
                params=parts.get("params"),
                json=parts.get("json_body"),
                data=parts.get("data"),
                headers=dict(headers),
                allow_redirects=self.follow_redirects,
            ) as resp:
                yield resp

    async def _send_once(self, method: str, path: str, expect_json: bool, parts: RequestParts) -> Any:
        refreshed = False
        while True:
            all_headers = {**(await self.auth_headers()), **(parts.get("headers") or {})}
            async with self.open_response(method, path, all_headers, parts) as resp:
                if resp.status == 401 and not refreshed and await self.on_auth_failure():
                    refreshed = True
                    continue
                if resp.status >= 400:
                    raise await error_from_response(self.service, resp)
                if not expect_json:
                    return await resp.read()
                text = await resp.text()
                if not text:
                    return None
                try:
                    return json.loads(text)
                except ValueError:
                    return text

    async def request(
        self,
        method: str,
        path: str,
        *,
        expect_json: bool = True,
        retry_policy: RetryPolicy | None = None,
        **parts: Unpack[RequestParts],
    ) -> Any:
        """Send a request, retrying what is retryable; return parsed JSON (or bytes)."""
        return await retry_async(
            lambda: self._send_once(method, path, expect_json, parts), retry_policy or self.retry_policy
        )

    async def stream(
        self,
        path: str,
        *,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        chunk_size: int = 65536,
    ) -> AsyncIterator[bytes]:
        """GET `path` and yield the body in chunks (no retry once bytes have flowed)."""
        all_headers = {**(await self.auth_headers()), **(headers or {})}
        async with self.open_response("GET", path, all_headers, {"params": params}) as resp:
            if resp.status >= 400:
                raise await error_from_response(self.service, resp)
            async for chunk in resp.content.iter_chunked(chunk_size):
                yield chunk
