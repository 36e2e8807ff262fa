"""Async client of the Google Calendar API v3 (events) with pluggable OAuth2 tokens.
Knows nothing of Motia.

Token providers: `StaticTokenProvider` (sandbox/simulator) and `ServiceAccountTokenProvider`
(JWT-bearer grant, the key read and the JWT signed by google-auth, posted on aiohttp;
optional domain-wide delegation `subject`, token cached until shortly before expiry). On a 401 the client drops the token and retries once.

Incremental sync: `list_all(calendar_id)` does a full list and returns the items plus the
`nextSyncToken`; `list_all(calendar_id, sync_token=...)` returns what changed since (deleted
events arrive with `status: "cancelled"` and may carry only their `id`). A 410 on a sync
token raises `SyncTokenExpired`: clear the stored token and do a full sync.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, Unpack
from urllib.parse import quote

from google.auth import jwt as google_jwt
from google.auth.crypt import Signer
from google.oauth2 import service_account
from yarl import URL

from services.clients.errors import (
    ApiError,
    AuthError,
    ConfigError,
    ConflictError,
    IntegrationError,
    NotFoundError,
    ValidationError,
)
from services.clients.http import HttpOptions, JsonHttpClient

GOOGLE_CALENDAR_BASE_URL = "https://www.googleapis.com/calendar/v3"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# google-auth's functions carry no annotations; these names give them their documented types.
_credentials_from_info: Callable[..., service_account.Credentials] = service_account.Credentials.from_service_account_info
_jwt_encode: Callable[[Signer, Mapping[str, Any]], bytes] = google_jwt.encode
DEFAULT_PAGE_SIZE = 250


class EventStatus(StrEnum):
    """`status` of an event; a deleted one stays listed as CANCELLED."""

    CONFIRMED = "confirmed"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"


class Visibility(StrEnum):
    DEFAULT = "default"
    PUBLIC = "public"
    PRIVATE = "private"
    CONFIDENTIAL = "confidential"


class EventType(StrEnum):
    """`eventType`; the others are out-of-office, focus time, birthdays and the like."""

    DEFAULT = "default"


# Parameters Google refuses next to a syncToken.
_SYNC_INCOMPATIBLE = ("time_min", "time_max", "updated_min", "private_ext", "q", "order_by")


class SyncTokenExpired(IntegrationError):
    """410 Gone on a sync token: drop the stored token and do a full sync."""

    retryable = False

    def __init__(self, calendar_id: str, reason: str = "") -> None:
        super().__init__(f"Google sync token for {calendar_id} expired{': ' + reason if reason else ''}; full sync required")
        self.calendar_id = calendar_id
        self.reason = reason


class TokenProvider(Protocol):
    """Where the client gets its access token."""

    async def token(self) -> str: ...

    async def invalidate(self) -> None: ...


class StaticTokenProvider:
    """A fixed access token (sandbox and simulator)."""

    refreshable = False
    """A 401 cannot be cured by asking again."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ConfigError("StaticTokenProvider needs a token")
        self._token = token

    async def token(self) -> str:
        return self._token

    async def invalidate(self) -> None:
        return None


class ServiceAccountTokenProvider:
    """OAuth2 access tokens for a Google service account (JWT-bearer grant, RS256).

    `service_account_info` is the parsed JSON key file (`client_email`, `private_key`,
    optional `private_key_id`, `token_uri`); `subject` impersonates a user through
    domain-wide delegation. Tokens are cached until `refresh_margin` seconds before expiry.

    google-auth reads the key file (`google.oauth2.service_account.Credentials`) and signs
    the assertion (`google.auth.jwt.encode` with the credentials' RSA signer, `kid` from
    `private_key_id`); this class posts the grant itself, on aiohttp. Why not
    `Credentials.refresh()` (google-auth 2.62.2): its transports are blocking (requests,
    which would need a thread per refresh) or private/experimental for asyncio
    (`google.oauth2._service_account_async` over `google.auth.transport._aiohttp_requests`;
    the public `google.auth.aio` has only static and anonymous credentials); its refresh
    would bypass the retry policy and typed errors every client shares (`AuthError` with the
    OAuth reason, `Retry-After`); and its assertion's `aud` is Google's endpoint whatever
    `token_uri` says, while the token URL must stay configurable (GOOGLE_TOKEN_URL: the
    sandbox's simulator serves it).
    """

    def __init__(
        self,
        service_account_info: Mapping[str, Any],
        scopes: Sequence[str] = (CALENDAR_SCOPE,),
        subject: str | None = None,
        token_url: str | None = None,
        *,
        refresh_margin: float = 60.0,
        lifetime: int = 3600,
        **http: Unpack[HttpOptions],
    ) -> None:
        for required in ("client_email", "private_key"):
            if required not in service_account_info:
                raise ConfigError(f"service account info lacks {required}")
        self.token_url = token_url or str(service_account_info.get("token_uri") or GOOGLE_TOKEN_URL)
        try:
            credentials = _credentials_from_info(
                {**service_account_info, "token_uri": self.token_url}, scopes=list(scopes), subject=subject
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"service account private_key is not a usable PEM key: {exc}") from exc
        self._signer: Signer = credentials.signer
        try:  # google-auth loads any PEM key; an RS256 signature needs an RSA one
            self._signer.sign(b"probe")
        except (ValueError, TypeError) as exc:
            raise ConfigError("service account private_key must be an RSA key") from exc
        self.client_email = str(service_account_info["client_email"])
        self.key_id = service_account_info.get("private_key_id")
        self.scopes = list(scopes)
        self.subject = subject
        self.refresh_margin = refresh_margin
        self.lifetime = min(lifetime, 3600)
        url = URL(self.token_url)
        self._path = url.raw_path_qs.lstrip("/")
        self._http = JsonHttpClient(str(url.origin()), **http)
        self._http.service = "google-oauth"
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    def assertion(self, now: float | None = None) -> str:
        """The signed JWT for the token request (signed by google-auth; `aud` = our token URL)."""
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.client_email,
            "scope": " ".join(self.scopes),
            "aud": self.token_url,
            "iat": issued,
            "exp": issued + self.lifetime,
        }
        if self.subject:
            claims["sub"] = self.subject
        return _jwt_encode(self._signer, claims).decode("ascii")

    async def token(self) -> str:
        if self._token and time.time() < self._expires_at - self.refresh_margin:
            return self._token
        async with self._lock:
            if self._token and time.time() < self._expires_at - self.refresh_margin:
                return self._token
            started = time.time()
            try:
                answer = await self._http.request(
                    "POST",
                    self._path,
                    data={"grant_type": JWT_BEARER_GRANT, "assertion": self.assertion(started)},
                )
            except ApiError as exc:
                if exc.status in (400, 401, 403):
                    raise AuthError("google-oauth", exc.status, _oauth_reason(exc), method="POST", url=self.token_url) from exc
                raise
            if not isinstance(answer, dict) or not answer.get("access_token"):
                raise AuthError("google-oauth", 502, "token answer without access_token", method="POST", url=self.token_url)
            self._token = str(answer["access_token"])
            self._expires_at = started + float(answer.get("expires_in", 3600))
            return self._token

    async def invalidate(self) -> None:
        self._token = None
        self._expires_at = 0.0

    async def close(self) -> None:
        await self._http.close()


def _oauth_reason(exc: ApiError) -> str:
    try:
        body = json.loads(exc.body)
    except (ValueError, TypeError):
        return exc.reason
    if isinstance(body, dict) and body.get("error"):
        desc = body.get("error_description")
        return f"{body['error']}: {desc}" if desc else str(body["error"])
    return exc.reason


@dataclass
class EventsPage:
    """One page of `events.list`."""

    items: list[dict[str, Any]] = field(default_factory=list)
    next_page_token: str | None = None
    next_sync_token: str | None = None
    time_zone: str | None = None


def _rfc3339(value: datetime | str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValidationError("Google needs time-zone aware datetimes")
        return value.isoformat()
    return value


def is_cancelled(event: Mapping[str, Any]) -> bool:
    """Whether an event from a list is a deletion."""
    return event.get("status") == EventStatus.CANCELLED


def private_property(event: Mapping[str, Any], key: str) -> str | None:
    """`extendedProperties.private[key]` of an event, if set."""
    return ((event.get("extendedProperties") or {}).get("private") or {}).get(key)


class GoogleCalendarAPI(JsonHttpClient):
    """Events of Google calendars."""

    service = "google-calendar"

    def __init__(
        self,
        base_url: str = GOOGLE_CALENDAR_BASE_URL,
        *,
        token_provider: TokenProvider,
        **http: Unpack[HttpOptions],
    ) -> None:
        super().__init__(base_url, **http)
        self.token_provider = token_provider

    async def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token_provider.token()}"}

    async def on_auth_failure(self) -> bool:
        await self.token_provider.invalidate()
        return bool(getattr(self.token_provider, "refreshable", True))

    @staticmethod
    def _events_path(calendar_id: str, event_id: str | None = None) -> str:
        path = f"calendars/{quote(calendar_id, safe='@')}/events"
        return f"{path}/{quote(event_id, safe='')}" if event_id else path

    # -- reading -------------------------------------------------------------------------

    async def list_events(
        self,
        calendar_id: str,
        *,
        sync_token: str | None = None,
        page_token: str | None = None,
        time_min: datetime | str | None = None,
        time_max: datetime | str | None = None,
        updated_min: datetime | str | None = None,
        private_ext: Mapping[str, str] | None = None,
        q: str | None = None,
        order_by: str | None = None,
        show_deleted: bool = True,
        single_events: bool = False,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> EventsPage:
        """One page of events. Raises `SyncTokenExpired` when Google answers 410 to a sync token."""
        params: list[tuple[str, str]] = [("maxResults", str(page_size)), ("singleEvents", str(single_events).lower())]
        if sync_token:
            given = {
                "time_min": time_min,
                "time_max": time_max,
                "updated_min": updated_min,
                "private_ext": private_ext,
                "q": q,
                "order_by": order_by,
            }
            clash = [name for name in _SYNC_INCOMPATIBLE if given[name]]
            if clash:
                raise ValidationError(f"sync_token cannot be combined with {', '.join(clash)}")
            # Deleted events always come with a sync token; showDeleted=false would be a 400.
            params.append(("syncToken", sync_token))
        else:
            params.append(("showDeleted", str(show_deleted).lower()))
        if page_token:
            params.append(("pageToken", page_token))
        if time_min is not None:
            params.append(("timeMin", _rfc3339(time_min)))
        if time_max is not None:
            params.append(("timeMax", _rfc3339(time_max)))
        if updated_min is not None:
            params.append(("updatedMin", _rfc3339(updated_min)))
        for key, value in (private_ext or {}).items():
            params.append(("privateExtendedProperty", f"{key}={value}"))
        if q:
            params.append(("q", q))
        if order_by:
            params.append(("orderBy", order_by))
        try:
            answer = await self.request("GET", self._events_path(calendar_id), params=params)
        except ApiError as exc:
            if exc.status == 410 and sync_token:
                raise SyncTokenExpired(calendar_id, exc.reason) from exc
            raise
        answer = answer or {}
        return EventsPage(
            items=list(answer.get("items") or []),
            next_page_token=answer.get("nextPageToken"),
            next_sync_token=answer.get("nextSyncToken"),
            time_zone=answer.get("timeZone"),
        )

    async def iter_pages(self, calendar_id: str, **kwargs: Any) -> AsyncIterator[EventsPage]:
        """Every page of a list (same keyword arguments as `list_events`, without page_token)."""
        kwargs.pop("page_token", None)
        token: str | None = None
        while True:
            page = await self.list_events(calendar_id, page_token=token, **kwargs)
            yield page
            token = page.next_page_token
            if not token:
                return

    async def list_all(self, calendar_id: str, **kwargs: Any) -> tuple[list[dict[str, Any]], str | None]:
        """All items over all pages and the final `nextSyncToken` (None if Google gave none).

        Without `sync_token` this is a full sync; with it, the changes since (incl. cancelled).
        """
        items: list[dict[str, Any]] = []
        sync: str | None = None
        async for page in self.iter_pages(calendar_id, **kwargs):
            items.extend(page.items)
            sync = page.next_sync_token or sync
        return items, sync

    async def get_event(self, calendar_id: str, event_id: str) -> dict[str, Any] | None:
        """The event (deleted ones come back with status "cancelled"), or None if unknown."""
        try:
            result: dict[str, Any] = await self.request("GET", self._events_path(calendar_id, event_id))
            return result
        except NotFoundError:
            return None
        except ApiError as exc:
            if exc.status == 410:
                return None
            raise

    async def find_by_private_property(
        self, calendar_id: str, key: str, value: str, *, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        """Events whose `extendedProperties.private[key] == value` (e.g. advowareFrNr)."""
        items, _ = await self.list_all(calendar_id, private_ext={key: value}, show_deleted=include_deleted)
        return items

    # -- writing -------------------------------------------------------------------------

    async def insert_event(self, calendar_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an event and return it.

        An `id` is generated when the body has none, so a retry after a lost answer meets
        409 and returns the event the first attempt created instead of a duplicate.
        """
        payload = dict(body)
        payload.setdefault("id", uuid.uuid4().hex)
        try:
            result: dict[str, Any] = await self.request("POST", self._events_path(calendar_id), json_body=payload)
            return result
        except ConflictError:
            existing = await self.get_event(calendar_id, str(payload["id"]))
            if existing is None or is_cancelled(existing):
                raise
            return existing

    async def patch_event(self, calendar_id: str, event_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Change the given fields (objects merge, null removes) and return the event."""
        result: dict[str, Any] = await self.request("PATCH", self._events_path(calendar_id, event_id), json_body=dict(body))
        return result

    async def update_event(self, calendar_id: str, event_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the event with `body` and return it."""
        result: dict[str, Any] = await self.request("PUT", self._events_path(calendar_id, event_id), json_body=dict(body))
        return result

    async def delete_event(self, calendar_id: str, event_id: str) -> bool:
        """Delete an event. False when it was already deleted (410) or never existed (404)."""
        try:
            await self.request("DELETE", self._events_path(calendar_id, event_id))
        except NotFoundError:
            return False
        except ApiError as exc:
            if exc.status == 410:
                return False
            raise
        return True


__all__ = [
    "CALENDAR_SCOPE",
    "EventsPage",
    "GOOGLE_CALENDAR_BASE_URL",
    "GOOGLE_TOKEN_URL",
    "EventStatus",
    "EventType",
    "GoogleCalendarAPI",
    "ServiceAccountTokenProvider",
    "StaticTokenProvider",
    "SyncTokenExpired",
    "TokenProvider",
    "Visibility",
    "is_cancelled",
    "private_property",
]
