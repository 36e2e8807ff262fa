"""Google Calendar simulator: the aiohttp app (`/token`, `/calendar/v3` routes, admin routes)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.base import make_seeded_app
from simulators.google_calendar.auth import check_assertion
from simulators.google_calendar.events import (
    event_time,
    expand_instances,
    merge_patch,
    overlaps_window,
    parse_rrule,
)
from simulators.google_calendar.model import (
    BASE,
    CURSOR_TTL,
    DEFAULT_MAX_RESULTS,
    INCOMPATIBLE_WITH_SYNC,
    JWT_BEARER,
    MAX_MAX_RESULTS,
    Calendar,
    Cursor,
    InvalidEvent,
    StoredEvent,
    _parse_rfc3339,
    _rfc3339,
    bad_request,
    google_error,
    not_found,
)
from simulators.google_calendar.state import STATE, GoogleState


def _flag(request: web.Request, name: str) -> bool | None | web.Response:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    return bad_request(f"Invalid boolean value for {name}: {raw}")


def create_app(
    valid_tokens: set[str],
    *,
    seed: dict[str, Any] | str | Path | None = None,
    public_key: str | bytes | None = None,
    token_ttl: int = 3600,
) -> web.Application:
    """The Google Calendar simulator. `seed` is a seed document or the path of a JSON file;
    `public_key` (PEM) makes `/token` verify assertion signatures."""
    state = GoogleState(valid_tokens)
    verifier: Any = None
    if public_key is not None:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        verifier = load_pem_public_key(public_key.encode() if isinstance(public_key, str) else public_key)

    app = make_seeded_app(state, seed, load=state.load, drop=state.drop_data)
    app[STATE] = state

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(BASE + "/"):
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header[:7].lower() == "bearer " else ""
            if not token or not state.token_ok(token):
                return google_error(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                    "or other valid authentication credential.",
                    "authError",
                    extra={"location": "Authorization", "locationType": "header"},
                    headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
                )
        return await handler(request)

    app.middlewares.append(auth_middleware)

    def get_calendar(request: web.Request) -> Calendar | None:
        return state.calendar(request.match_info["calendar_id"])

    async def read_json(request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return google_error(400, "Parse Error", "parseError")
        if not isinstance(body, dict):
            return google_error(400, "Parse Error", "parseError")
        return body

    # -- calendars / events ------------------------------------------------------------------

    async def get_calendar_handler(request: web.Request) -> web.Response:
        cal = get_calendar(request)
        return web.json_response(cal.public()) if cal else not_found()

    async def list_events(request: web.Request) -> web.Response:
        cal = get_calendar(request)
        if cal is None:
            return not_found()
        q = request.query
        try:
            max_results = int(q.get("maxResults", DEFAULT_MAX_RESULTS))
        except ValueError:
            return bad_request("Invalid value for: maxResults")
        if max_results < 1:
            return bad_request("Invalid value for: maxResults")
        max_results = min(max_results, MAX_MAX_RESULTS)

        page_token = q.get("pageToken")
        fingerprint = hashlib.sha256(
            json.dumps(sorted((k, v) for k, v in q.items() if k not in ("pageToken", "maxResults"))).encode()
        ).hexdigest()
        if page_token:
            cursor = state.cursors.get(page_token)
            if cursor is None or cursor.fingerprint != fingerprint or cursor.calendar_id != cal.id:
                return bad_request("Invalid page token value.")
            del state.cursors[page_token]
            return respond(cal, cursor.items, cursor.next_sync_token, max_results, fingerprint)

        single = _flag(request, "singleEvents")
        show_deleted = _flag(request, "showDeleted")
        for flag in (single, show_deleted):
            if isinstance(flag, web.Response):
                return flag
        sync_token = q.get("syncToken")
        order_by = q.get("orderBy")
        if sync_token:
            clash = [name for name in INCOMPATIBLE_WITH_SYNC if name in q]
            if clash:
                return bad_request(f"Invalid combination of parameters: syncToken cannot be used with {', '.join(clash)}.")
            if show_deleted is False:
                return bad_request("Invalid combination of parameters: syncToken cannot be used with showDeleted=false.")
            known = state.sync_tokens.get(sync_token)
            if known is None or known[0] != cal.id:
                return google_error(410, "Sync token is no longer valid, a full sync is required.", "fullSyncRequired")
            since_seq: int | None = known[1]
        else:
            since_seq = None
        if order_by not in (None, "startTime", "updated"):
            return bad_request("Invalid value for: orderBy")
        if order_by == "startTime" and not single:
            return bad_request("The requested ordering is not available for the particular query.")

        try:
            tmin = _parse_rfc3339(q["timeMin"]) if "timeMin" in q else None
            tmax = _parse_rfc3339(q["timeMax"]) if "timeMax" in q else None
            updated_min = _parse_rfc3339(q["updatedMin"]) if "updatedMin" in q else None
        except ValueError:
            return bad_request("Bad Request")
        if tmin is not None and tmax is not None and tmax <= tmin:
            return bad_request("The specified time range is empty.")
        filters: list[tuple[str, str, str]] = []
        for scope, param in (("private", "privateExtendedProperty"), ("shared", "sharedExtendedProperty")):
            for raw in q.getall(param, []):
                if "=" not in raw:
                    return bad_request(f"Invalid value for: {param}")
                key, value = raw.split("=", 1)
                filters.append((scope, key, value))
        text = (q.get("q") or "").lower()

        include_deleted = since_seq is not None or updated_min is not None or bool(show_deleted)
        upper = state.seq
        chosen: list[StoredEvent] = []
        for stored in sorted(cal.events.values(), key=lambda s: s.order):
            if since_seq is not None and stored.seq <= since_seq:
                continue
            if stored.cancelled and not include_deleted:
                continue
            if updated_min is not None and _parse_rfc3339(stored.data["updated"]) < updated_min:
                continue
            ext = stored.data.get("extendedProperties") or {}
            if any((ext.get(scope) or {}).get(key) != value for scope, key, value in filters):
                continue
            if text and not any(text in str(stored.data.get(f, "")).lower() for f in ("summary", "description", "location")):
                continue
            if (tmin or tmax) and not stored.cancelled and not overlaps_window(stored, cal, tmin, tmax):
                continue
            chosen.append(stored)

        items: list[dict[str, Any]] = []
        for stored in chosen:
            if stored.cancelled:
                items.append(stored.tombstone())
            elif single and parse_rrule(stored.data) is not None:
                items.extend(expand_instances(stored, cal, tmin, tmax))
            else:
                items.append(copy.deepcopy(stored.data))
        if order_by == "startTime":
            items.sort(key=lambda e: event_time(e["start"], cal, "start") if "start" in e else datetime.min.replace(tzinfo=UTC))
        elif order_by == "updated":
            items.sort(key=lambda e: e.get("updated", ""))
        # The token marks "now" for the whole calendar: an incremental list with it returns
        # every change since, whatever filters this list used.
        next_sync = state.new_sync_token(cal.id, upper)
        return respond(cal, items, next_sync, max_results, fingerprint)

    def respond(cal: Calendar, items: list[dict[str, Any]], next_sync: str | None, max_results: int, fingerprint: str) -> web.Response:
        page, rest = items[:max_results], items[max_results:]
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"{state.seq}"',
            "summary": cal.summary,
            "description": "",
            "updated": _rfc3339(time.time()),
            "timeZone": cal.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
            "items": page,
        }
        if rest:
            stale = time.time() - CURSOR_TTL
            for key in [k for k, c in state.cursors.items() if c.created < stale]:
                del state.cursors[key]
            token = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("=")
            state.cursors[token] = Cursor(fingerprint, cal.id, rest, next_sync, time.time())
            body["nextPageToken"] = token
        elif next_sync:
            body["nextSyncToken"] = next_sync
        return web.json_response(body)

    async def insert_event(request: web.Request) -> web.Response:
        cal = get_calendar(request)
        if cal is None:
            return not_found()
        body = await read_json(request)
        if isinstance(body, web.Response):
            return body
        try:
            stored = state.insert(cal, body)
        except InvalidEvent as exc:
            return bad_request(str(exc))
        except KeyError:
            return google_error(409, "The requested identifier already exists.", "duplicate")
        return web.json_response(stored.data)

    def find_event(request: web.Request) -> tuple[Calendar, StoredEvent] | web.Response:
        cal = get_calendar(request)
        if cal is None:
            return not_found()
        stored = cal.events.get(request.match_info["event_id"])
        if stored is None:
            return not_found()
        return cal, stored

    async def get_event(request: web.Request) -> web.Response:
        found = find_event(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(found[1].data)

    async def write_event(request: web.Request, *, patch: bool) -> web.Response:
        """PATCH merges the body into the stored event (merge_patch), PUT replaces it."""
        found = find_event(request)
        if isinstance(found, web.Response):
            return found
        cal, stored = found
        body = await read_json(request)
        if isinstance(body, web.Response):
            return body
        try:
            state.replace(cal, stored, merge_patch(stored.data, body) if patch else body)
        except InvalidEvent as exc:
            return bad_request(str(exc))
        return web.json_response(stored.data)

    async def patch_event(request: web.Request) -> web.Response:
        return await write_event(request, patch=True)

    async def put_event(request: web.Request) -> web.Response:
        return await write_event(request, patch=False)

    async def delete_event(request: web.Request) -> web.Response:
        found = find_event(request)
        if isinstance(found, web.Response):
            return found
        _cal, stored = found
        if stored.cancelled:
            return google_error(410, "Resource has been deleted", "deleted")
        state.delete(stored)
        return web.Response(status=204)

    # -- OAuth2 token endpoint ---------------------------------------------------------------

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: " + str(form.get("grant_type", ""))},
                status=400,
            )
        assertion = form.get("assertion")
        if not isinstance(assertion, str) or not assertion:
            return web.json_response({"error": "invalid_request", "error_description": "Missing required parameter: assertion"}, status=400)
        try:
            check_assertion(assertion, verifier)
        except ValueError as exc:
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
        access = "ya29.sim-" + secrets.token_urlsafe(32)
        state.issued_tokens[access] = time.time() + token_ttl
        return web.json_response({"access_token": access, "expires_in": token_ttl, "token_type": "Bearer"})

    # -- admin extras ------------------------------------------------------------------------

    async def expire_sync_tokens(request: web.Request) -> web.Response:
        count = len(state.sync_tokens)
        state.sync_tokens.clear()
        return web.json_response({"expired": count})

    async def revoke_tokens(request: web.Request) -> web.Response:
        count = len(state.issued_tokens)
        state.issued_tokens.clear()
        return web.json_response({"revoked": count})

    async def list_calendars(request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"id": c.id, "summary": c.summary, "events": sum(not e.cancelled for e in c.events.values())}
                for c in state.calendars.values()
            ]
        )

    app.add_routes(
        [
            web.get(BASE + "/calendars/{calendar_id}", get_calendar_handler),
            web.get(BASE + "/calendars/{calendar_id}/events", list_events),
            web.post(BASE + "/calendars/{calendar_id}/events", insert_event),
            web.get(BASE + "/calendars/{calendar_id}/events/{event_id}", get_event),
            web.patch(BASE + "/calendars/{calendar_id}/events/{event_id}", patch_event),
            web.put(BASE + "/calendars/{calendar_id}/events/{event_id}", put_event),
            web.delete(BASE + "/calendars/{calendar_id}/events/{event_id}", delete_event),
            web.post("/token", token),
            web.post("/_sim/expire-sync-tokens", expire_sync_tokens),
            web.post("/_sim/revoke-tokens", revoke_tokens),
            web.get("/_sim/calendars", list_calendars),
        ]
    )
    return app


