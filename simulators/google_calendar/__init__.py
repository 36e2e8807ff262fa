"""Simulator of the Google Calendar API v3 (events) plus a tiny OAuth2 token endpoint
(see external-apis.md §4).

- `/calendar/v3/...` needs `Authorization: Bearer <token>`, where the token is one of
  `valid_tokens` or one issued by `POST /token`; otherwise 401 with Google's error JSON
  `{"error": {"code", "message", "errors": [...], "status"}}`.
- `POST /token` takes the JWT-bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
  `assertion=<RS256 JWT with iss/scope/aud/exp>`), verifies the signature when the app was given
  `public_key`, and answers `{access_token, expires_in, token_type: "Bearer"}`.
- `GET /calendars/{cid}/events` supports pageToken, maxResults (default 250, max 2500),
  singleEvents (simple RRULE expansion: DAILY/WEEKLY(+BYDAY)/MONTHLY/YEARLY with INTERVAL,
  COUNT, UNTIL), showDeleted, timeMin, timeMax, updatedMin, q, orderBy, privateExtendedProperty
  and sharedExtendedProperty (repeatable `key=value`, all must match) and syncToken.
  `nextSyncToken` is only on the last page. `syncToken` with timeMin/timeMax/updatedMin/q/
  privateExtendedProperty/sharedExtendedProperty/orderBy, or with showDeleted=false → 400.
  An unknown or expired syncToken → 410 `fullSyncRequired` (`POST /_sim/expire-sync-tokens`
  expires all). `nextSyncToken` covers the whole calendar whatever filters the list used.
  A list is materialised at its first page; later pages slice that snapshot (page tokens
  live an hour and must be used with the same other parameters, else 400).
- Deleted events stay as tombstones with `status: "cancelled"`. In lists (incremental sync,
  updatedMin, showDeleted) they carry only `kind, etag, id, status, updated` (Google only
  guarantees `id`); `events.get` returns the whole event with status cancelled. A second
  DELETE answers 410 "Resource has been deleted"; unknown ids 404.
- PATCH merges objects recursively (null deletes a key), replaces arrays, and replaces
  `start`/`end` as a whole. Insert accepts a client-chosen `id` (base32hex, 5-1024 chars;
  a duplicate → 409), which makes retried inserts idempotent.

Admin extras: `POST /_sim/expire-sync-tokens`, `POST /_sim/revoke-tokens` (drops issued
access tokens, so clients must fetch a new one), `GET /_sim/calendars` (ids and event counts).

Seed document: `{"calendars": [{"id", "summary"?, "timeZone"?, "events": [<event body>]}]}`.
Strings in seeded events may use `{{today}}`, `{{today+3}}`, `{{today-1}}` for dates relative
to the day of loading (YYYY-MM-DD), so a demo seed never goes stale.
"""

from __future__ import annotations

from simulators.google_calendar.app import create_app
from simulators.google_calendar.model import (
    BASE,
    Calendar,
    EventStatus,
    StoredEvent,
    google_error,
)
from simulators.google_calendar.state import STATE, GoogleState

__all__ = ["BASE", "STATE", "Calendar", "EventStatus", "GoogleState", "StoredEvent", "create_app", "google_error"]
