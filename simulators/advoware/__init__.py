"""Simulator of the Advoware API: security gateway (token), URL discovery and the
`api/v1/...` endpoints our integration uses (external-apis.md §3). One aiohttp app
serves the gateway, the configurator and the API; paths match case-insensitively
(like ASP.NET). Paths, field names and wire formats are the simulator's own (`wire.py`), written from
the vendor's documentation, never imported from the project.

Auth: `POST /api/v1/Token` checks every field, the HMAC-512 signature over
`"{Product}:{AppID}:{Nonce}:{RequestTimeStamp}"` (key = base64decode(apiKey)), a
timestamp within ±5 minutes and an unused nonce, then the credentials; it answers
`{"access_token", "expiration_utc"}` (.NET style, 7 fractional digits). Every other
`api/v1/...` call needs `Authorization: Bearer <live token>`, else 401 "... ist nicht
angemeldet ...". Errors are ASP.NET-style `{"Message": "..."}` (validation errors add
`ModelState`); unknown paths answer 404, wrong methods 405.

Behaviour choices where the real API is not documented ([I]):
- `TermineActiveSync` POST answers 200 with the new `FrNr` as a bare JSON number (what the
  vendor's ActiveSync backend expects); PUT replaces the whole appointment (missing fields
  fall back to defaults, as ASP.NET DTO binding does) and answers the stored record;
  DELETE answers 200 with an empty body. Unknown body fields are dropped.
- Lists of appointments need `from` and `to`; `kuerzel` matches `Anwalt` or `Sb`
  (case-insensitive; `Allgemein` = no lawyer), dates overlap inclusively; a series
  (`Dauertermin=1`) spans `Datum`..`DatumBis`.
- Parties page with `skip`/`take` (default 100, max 1000) ordered by `BetNr`, filter
  `name` (substring of Name/Vorname), `geaendertSeit` (GeaendertAm >= value, ms precision)
  and `externeId`. PUT replaces, POST answers 201 with the record. Deleting a party that a
  matter (Akte) references answers 409; other deletes answer 200 with an empty body.
- Bank accounts validate the IBAN checksum (mod 97) and the BIC format (400 otherwise).

Admin additions: `POST /_sim/expire-tokens` invalidates every issued token (→ `{"expired": n}`).
Count token requests with `GET /_sim/requests?path=/api/v1/Token&method=POST`.

Seed document (`seed=`, `POST /_sim/seed`, see seed/advoware_demo.json):
`{"Mitarbeiter": [...], "Akten": [...], "Beteiligte": [{..., "Bankverbindungen": [...]}],
  "Termine": [...]}` with API field names. A Termin may give `_day` (days from today, UTC),
`_time` (`HH:MM:SS`) and `_end_day` instead of `Datum`/`DatumBis`, so demo dates stay current,
and `_reminder_minutes` (before the start) instead of `ErinnerungsDatum`.

Package layout: `wire` (paths, fields, formats), `records` (validation), `state` (data,
tokens, seed), `app` (routes).
"""

from __future__ import annotations

from simulators.advoware.app import STATE, Route, create_app
from simulators.advoware.records import (
    Invalid,
    api_error,
    clean_bankverbindung,
    clean_beteiligter,
    clean_termin,
    iban_is_valid,
)
from simulators.advoware.state import (
    DEMO_SEED_PATH,
    AdvowareConfig,
    AdvowareState,
    load_demo_seed,
)

__all__ = [
    "DEMO_SEED_PATH",
    "STATE",
    "AdvowareConfig",
    "AdvowareState",
    "Invalid",
    "Route",
    "api_error",
    "clean_bankverbindung",
    "clean_beteiligter",
    "clean_termin",
    "create_app",
    "iban_is_valid",
    "load_demo_seed",
]
