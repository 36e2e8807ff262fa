"""Simulator of the Advoware API: security gateway (token), URL discovery and the
`api/v1/...` endpoints our integration uses (external-apis.md §3). One aiohttp app
serves the gateway, the configurator and the API; paths match case-insensitively
(like ASP.NET). Every path and field name comes from `services.advoware_paths`.

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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from aiohttp import web

from services.advoware_paths import (
    ALL_KUERZEL,
    BETEILIGTER_READ_ONLY,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PRODUCT,
    DEFAULT_ROLE,
    ERROR_MESSAGE_FIELD,
    GENERAL_KUERZEL,
    MAX_PAGE_SIZE,
    TERMIN_FLAGS,
    TIMESTAMP_WINDOW_SECONDS,
    AkteBeteiligterField,
    AkteField,
    BankverbindungField,
    BeteiligteQuery,
    BeteiligterField,
    DiscoveryField,
    MitarbeiterField,
    TerminField,
    TerminQuery,
    TokenField,
    TokenResponseField,
    TurnusArt,
    format_datetime,
    format_utc,
    normalize_record,
    parse_time,
    parse_utc,
    parse_wall_clock,
)
from simulators.base import SimulatorState, make_seeded_app

DEMO_SEED_PATH = Path(__file__).with_name("seed") / "advoware_demo.json"


def load_demo_seed() -> dict[str, Any]:
    """The demo seed document (employees MM/AB/CK, two matters, parties, appointments)."""
    return json.loads(DEMO_SEED_PATH.read_text(encoding="utf-8"))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _format_expiration(dt: datetime) -> str:
    """.NET's round-trip format: 7 fractional digits and `Z`."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


class Invalid(Exception):
    """A request body or query failed validation (→ 400)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def api_error(status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    """An ASP.NET-style error answer `{"Message": ...}`."""
    return web.json_response({ERROR_MESSAGE_FIELD: message, **extra}, status=status, headers=headers or {})


def _invalid_response(exc: Invalid) -> web.Response:
    extra: dict[str, Any] = {}
    if exc.field:
        extra["ModelState"] = {exc.field: [exc.message]}
    return api_error(400, exc.message, **extra)


# --- Field validation --------------------------------------------------------------


def _string(field: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, bool)):
        raise Invalid(f'Das Feld "{field}" muss ein Text sein.', field)
    return str(value)


def _optional_string(field: str, body: dict[str, Any]) -> str | None:
    value = body.get(field)
    return None if value is None else _string(field, value)


def _int(field: str, value: Any, *, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        return int(value)
    try:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise Invalid(f'Der Wert "{value}" ist für das Feld "{field}" ungültig (Ganzzahl erwartet).', field) from None
    if minimum is not None and number < minimum:
        raise Invalid(f'Der Wert {number} ist für das Feld "{field}" zu klein.', field)
    return number


def _flag(field: str, value: Any) -> int:
    if value is None:
        return 0
    number = _int(field, value)
    if number not in (0, 1):
        raise Invalid(f'Das Feld "{field}" erlaubt nur 0 oder 1.', field)
    return number


def _wall_clock(field: str, value: Any) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f'Das Feld "{field}" hat kein gültiges Datumsformat: "{value}".', field)
    try:
        return parse_wall_clock(value)
    except ValueError:
        raise Invalid(f'Das Feld "{field}" hat kein gültiges Datumsformat: "{value}".', field) from None


def _time_of_day(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f'Das Feld "{field}" hat kein gültiges Zeitformat (HH:MM:SS): "{value}".', field)
    try:
        h, m, s = parse_time(value)
    except ValueError:
        raise Invalid(f'Das Feld "{field}" hat kein gültiges Zeitformat (HH:MM:SS): "{value}".', field) from None
    return f"{h:02d}:{m:02d}:{s:02d}"


def _query_date(name: str, value: str) -> date:
    try:
        return parse_wall_clock(value).date()
    except ValueError:
        raise Invalid(f'Der Parameter "{name}" ist kein gültiges Datum (JJJJ-MM-TT): "{value}".', name) from None


def _query_int(name: str, value: str | None, default: int, maximum: int | None = None) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise Invalid(f'Der Parameter "{name}" muss eine Ganzzahl sein: "{value}".', name) from None
    if number < 0:
        raise Invalid(f'Der Parameter "{name}" darf nicht negativ sein.', name)
    return min(number, maximum) if maximum is not None else number


_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IBAN_RE = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")
_BIC_RE = re.compile(r"^[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?$")


def iban_is_valid(iban: str) -> bool:
    """ISO 13616 check: format and mod-97 checksum."""
    iban = iban.replace(" ", "").upper()
    if not _IBAN_RE.match(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


# --- State ------------------------------------------------------------------------


@dataclass(frozen=True)
class AdvowareConfig:
    api_key: bytes
    app_id: str
    kanzlei: str
    database: str
    user: str
    password: str
    role: int
    product: int
    token_ttl_seconds: int


class AdvowareState(SimulatorState):
    """Data, issued tokens and seen nonces of one Advoware simulator."""

    def __init__(self, config: AdvowareConfig) -> None:
        super().__init__()
        self.config = config
        self.tokens: dict[str, float] = {}
        self.nonces: dict[str, float] = {}
        self.drop_data()

    def drop_data(self) -> None:
        self.mitarbeiter: dict[str, dict[str, Any]] = {}
        self.akten: dict[int, dict[str, Any]] = {}
        self.termine: dict[int, dict[str, Any]] = {}
        self.beteiligte: dict[int, dict[str, Any]] = {}
        self.bankverbindungen: dict[int, dict[str, Any]] = {}
        self.bank_owner: dict[int, int] = {}
        self.next_frnr = 1000
        self.next_betnr = 1
        self.next_bank_id = 1

    # tokens -------------------------------------------------------------------
    def issue_token(self) -> tuple[str, datetime]:
        token = secrets.token_urlsafe(32)
        expires = _now() + timedelta(seconds=self.config.token_ttl_seconds)
        self.tokens[token] = expires.timestamp()
        return token, expires

    def token_valid(self, token: str) -> bool:
        expires = self.tokens.get(token)
        if expires is None:
            return False
        if time.time() >= expires:
            del self.tokens[token]
            return False
        return True

    def expire_tokens(self) -> int:
        count = len(self.tokens)
        self.tokens.clear()
        return count

    def use_nonce(self, nonce: str) -> bool:
        """Record a nonce; False when it was seen within the replay window."""
        now = time.time()
        horizon = now - 4 * TIMESTAMP_WINDOW_SECONDS
        if len(self.nonces) > 10_000:
            self.nonces = {n: t for n, t in self.nonces.items() if t > horizon}
        if nonce in self.nonces and self.nonces[nonce] > horizon:
            return False
        self.nonces[nonce] = now
        return True

    # records ------------------------------------------------------------------
    def akten_of(self, betnr: int) -> list[dict[str, Any]]:
        out = []
        for akte in self.akten.values():
            for link in akte.get(AkteField.BETEILIGTE) or []:
                if int(link.get(AkteBeteiligterField.BETNR, -1)) == betnr:
                    out.append(akte)
                    break
        return out

    def load(self, doc: dict[str, Any]) -> None:
        """Add (or replace) the records of a seed document."""
        if not isinstance(doc, dict):
            raise TypeError("seed document must be a JSON object")
        now = format_utc(_now())
        for raw in doc.get("Mitarbeiter", []):
            rec = normalize_record(raw, MitarbeiterField)
            kuerzel = str(rec[MitarbeiterField.KUERZEL])
            self.mitarbeiter[kuerzel.upper()] = {
                MitarbeiterField.KUERZEL.value: kuerzel,
                MitarbeiterField.NAME.value: rec.get(MitarbeiterField.NAME, ""),
                MitarbeiterField.VORNAME.value: rec.get(MitarbeiterField.VORNAME, ""),
                MitarbeiterField.EMAIL.value: rec.get(MitarbeiterField.EMAIL, ""),
                MitarbeiterField.AKTIV.value: bool(rec.get(MitarbeiterField.AKTIV, True)),
            }
        for raw in doc.get("Akten", []):
            rec = normalize_record(raw, AkteField)
            nr = int(rec[AkteField.NR])
            akte = {f.value: rec.get(f) for f in AkteField}
            akte[AkteField.NR.value] = nr
            akte[AkteField.BETEILIGTE.value] = [
                {AkteBeteiligterField.BETNR.value: int(b["BetNr"]), AkteBeteiligterField.ROLLE.value: b.get("Rolle", "")}
                for b in rec.get(AkteField.BETEILIGTE) or []
            ]
            akte[AkteField.ABGELEGT.value] = int(rec.get(AkteField.ABGELEGT) or 0)
            akte[AkteField.ANGELEGT_AM.value] = rec.get(AkteField.ANGELEGT_AM) or now
            self.akten[nr] = akte
        for raw in doc.get("Beteiligte", []):
            banks = raw.get("Bankverbindungen", [])
            body = {k: v for k, v in raw.items() if k != "Bankverbindungen"}
            rec = normalize_record(body, BeteiligterField)
            betnr = int(rec[BeteiligterField.BETNR]) if rec.get(BeteiligterField.BETNR) else self.next_betnr
            self.next_betnr = max(self.next_betnr, betnr + 1)
            party = clean_beteiligter(rec, betnr, rec.get(BeteiligterField.GEAENDERT_AM) or now)
            self.beteiligte[betnr] = party
            for bank_raw in banks:
                bank_rec = normalize_record(bank_raw, BankverbindungField)
                bank_id = int(bank_rec[BankverbindungField.ID]) if bank_rec.get(BankverbindungField.ID) else self.next_bank_id
                self.next_bank_id = max(self.next_bank_id, bank_id + 1)
                self.bankverbindungen[bank_id] = clean_bankverbindung(
                    bank_rec, bank_id, bank_rec.get(BankverbindungField.GEAENDERT_AM) or now
                )
                self.bank_owner[bank_id] = betnr
        today = _now().date()
        for raw in doc.get("Termine", []):
            body = dict(raw)
            if "_day" in body:
                start_day = today + timedelta(days=int(body.pop("_day")))
                start_time = _time_of_day("_time", body.pop("_time", "00:00:00"))
                end_day = today + timedelta(days=int(body.pop("_end_day"))) if "_end_day" in body else start_day
                body[TerminField.DATUM.value] = f"{start_day.isoformat()}T{start_time}Z"
                body[TerminField.DATUM_BIS.value] = f"{end_day.isoformat()}T00:00:00Z"
            if "_reminder_minutes" in body:
                reminder = parse_wall_clock(body[TerminField.DATUM.value]) - timedelta(minutes=int(body.pop("_reminder_minutes")))
                body[TerminField.ERINNERUNGS_DATUM.value] = format_datetime(reminder)
            rec = normalize_record(body, TerminField)
            frnr = int(rec[TerminField.FRNR]) if rec.get(TerminField.FRNR) else self.next_frnr
            self.next_frnr = max(self.next_frnr, frnr + 1)
            self.termine[frnr] = clean_termin(rec, frnr, rec.get(TerminField.ZULETZT_GEAENDERT_AM) or now)


# --- Record cleaning (validation + defaults) ----------------------------------------


def clean_termin(body: dict[str, Any], frnr: int, changed_at: str) -> dict[str, Any]:
    """A full appointment from a request body (PUT semantics: missing → default)."""
    body = normalize_record(body, TerminField)
    if body.get(TerminField.DATUM) in (None, ""):
        raise Invalid('Das Feld "Datum" ist erforderlich.', TerminField.DATUM)
    start = _wall_clock(TerminField.DATUM, body[TerminField.DATUM])
    rec: dict[str, Any] = {TerminField.FRNR.value: frnr}
    for field in (TerminField.TEXT, TerminField.ORT, TerminField.NOTIZ, TerminField.ANWALT, TerminField.SB):
        rec[field.value] = _string(field, body.get(field))
    rec[TerminField.DATUM.value] = format_datetime(start)
    if body.get(TerminField.DATUM_BIS) not in (None, ""):
        end_day = _wall_clock(TerminField.DATUM_BIS, body[TerminField.DATUM_BIS])
    else:
        end_day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    rec[TerminField.DATUM_BIS.value] = format_datetime(end_day)
    if body.get(TerminField.UHRZEIT_BIS) not in (None, ""):
        rec[TerminField.UHRZEIT_BIS.value] = _time_of_day(TerminField.UHRZEIT_BIS, body[TerminField.UHRZEIT_BIS])
    else:
        rec[TerminField.UHRZEIT_BIS.value] = start.strftime("%H:%M:%S")
    for field in TERMIN_FLAGS:
        rec[field.value] = _flag(field, body.get(field))
    nr = body.get(TerminField.NR)
    rec[TerminField.NR.value] = None if nr in (None, "", 0) else _int(TerminField.NR, nr, minimum=1)
    rec[TerminField.TURNUS.value] = _int(TerminField.TURNUS, body.get(TerminField.TURNUS) or 0, minimum=0)
    art = _int(TerminField.TURNUS_ART, body.get(TerminField.TURNUS_ART) or 0)
    if art not in {a.value for a in TurnusArt}:
        raise Invalid(f'Der Wert {art} ist für das Feld "TurnusArt" ungültig (0-4).', TerminField.TURNUS_ART)
    rec[TerminField.TURNUS_ART.value] = art
    reminder = body.get(TerminField.ERINNERUNGS_DATUM)
    rec[TerminField.ERINNERUNGS_DATUM.value] = (
        None if reminder in (None, "") else format_datetime(_wall_clock(TerminField.ERINNERUNGS_DATUM, reminder))
    )
    h, m, s = parse_time(rec[TerminField.UHRZEIT_BIS])
    end = end_day.replace(hour=h, minute=m, second=s)
    if rec[TerminField.DAUERTERMIN]:
        if rec[TerminField.TURNUS] < 1 or art == TurnusArt.KEINE:
            raise Invalid("Ein Dauertermin braucht Turnus >= 1 und eine TurnusArt (1-4).", TerminField.TURNUS_ART)
        if end_day.date() < start.date():
            raise Invalid("Das Serienende (DatumBis) liegt vor dem Beginn (Datum).", TerminField.DATUM_BIS)
    elif end < start:
        raise Invalid("Das Ende des Termins (DatumBis/UhrzeitBis) liegt vor dem Beginn (Datum).", TerminField.DATUM_BIS)
    rec[TerminField.ZULETZT_GEAENDERT_AM.value] = changed_at
    return {f.value: rec[f.value] for f in TerminField}


def clean_beteiligter(body: dict[str, Any], betnr: int, changed_at: str) -> dict[str, Any]:
    body = normalize_record(body, BeteiligterField)
    name = _string(BeteiligterField.NAME, body.get(BeteiligterField.NAME)).strip()
    if not name:
        raise Invalid('Das Feld "Name" ist erforderlich.', BeteiligterField.NAME)
    rec: dict[str, Any] = {}
    for field in BeteiligterField:
        if field in BETEILIGTER_READ_ONLY:
            continue
        value = body.get(field)
        rec[field.value] = None if value is None else _string(field, value)
    rec[BeteiligterField.NAME.value] = name
    birth = rec.get(BeteiligterField.GEBURTSDATUM)
    if birth:
        rec[BeteiligterField.GEBURTSDATUM.value] = _wall_clock(BeteiligterField.GEBURTSDATUM, birth).strftime(
            "%Y-%m-%dT00:00:00"
        )
    else:
        rec[BeteiligterField.GEBURTSDATUM.value] = None
    email = rec.get(BeteiligterField.EMAIL)
    if email and not _EMAIL_RE.match(email):
        raise Invalid(f'Die E-Mail-Adresse "{email}" ist ungültig.', BeteiligterField.EMAIL)
    return {BeteiligterField.BETNR.value: betnr, **rec, BeteiligterField.GEAENDERT_AM.value: changed_at}


def clean_bankverbindung(body: dict[str, Any], bank_id: int, changed_at: str) -> dict[str, Any]:
    body = normalize_record(body, BankverbindungField)
    iban = _string(BankverbindungField.IBAN, body.get(BankverbindungField.IBAN)).replace(" ", "").upper()
    if not iban:
        raise Invalid('Das Feld "IBAN" ist erforderlich.', BankverbindungField.IBAN)
    if not iban_is_valid(iban):
        raise Invalid(f'Die IBAN "{iban}" ist ungültig (Prüfsumme oder Format).', BankverbindungField.IBAN)
    bic = _string(BankverbindungField.BIC, body.get(BankverbindungField.BIC)).replace(" ", "").upper()
    if bic and not _BIC_RE.match(bic):
        raise Invalid(f'Die BIC "{bic}" ist ungültig.', BankverbindungField.BIC)
    return {
        BankverbindungField.ID.value: bank_id,
        BankverbindungField.IBAN.value: iban,
        BankverbindungField.BIC.value: bic or None,
        BankverbindungField.BANK.value: _optional_string(BankverbindungField.BANK, body),
        BankverbindungField.KONTOINHABER.value: _optional_string(BankverbindungField.KONTOINHABER, body),
        BankverbindungField.GEAENDERT_AM.value: changed_at,
    }


# --- App ----------------------------------------------------------------------------

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


@dataclass
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool = True


STATE = web.AppKey("advoware_state", AdvowareState)


def _page(items: list[dict[str, Any]], request: web.Request) -> list[dict[str, Any]]:
    skip = _query_int(BeteiligteQuery.SKIP, request.query.get(BeteiligteQuery.SKIP), 0)
    take = _query_int(BeteiligteQuery.TAKE, request.query.get(BeteiligteQuery.TAKE), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    return items[skip : skip + take]


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        raise Invalid("Der Anfrageinhalt fehlt.")
    try:
        body = json.loads(raw)
    except ValueError:
        raise Invalid("Der Anfrageinhalt ist kein gültiges JSON.") from None
    if not isinstance(body, dict):
        raise Invalid("Der Anfrageinhalt muss ein JSON-Objekt sein.")
    return body


def create_app(
    api_key_b64: str,
    app_id: str,
    kanzlei: str,
    database: str,
    user: str,
    password: str,
    *,
    token_ttl_seconds: int = 3600,
    seed: dict[str, Any] | str | Path | None = None,
    role: int = DEFAULT_ROLE,
    product: int = DEFAULT_PRODUCT,
) -> web.Application:
    """The Advoware simulator app. `seed` is a seed document or a JSON file path (None: empty;
    `load_demo_seed()` gives the demo data); it is loaded at start and on `/_sim/reset {"seed": true}`."""
    try:
        key = base64.b64decode(api_key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("api_key_b64 is not valid base64") from exc
    config = AdvowareConfig(key, app_id, kanzlei, database, user, password, role, product, token_ttl_seconds)
    state = AdvowareState(config)
    app = make_seeded_app(state, seed, load=state.load, drop=state.drop_data)
    app[STATE] = state

    # --- token gateway and discovery ------------------------------------------------
    async def token(request: web.Request, _: dict[str, str]) -> web.Response:
        body = await _json_body(request)
        missing = [f.value for f in TokenField if body.get(f.value) in (None, "")]
        if missing:
            return api_error(400, f"Ungültige Anmeldeanfrage: es fehlen {', '.join(missing)}.")
        if str(body[TokenField.APP_ID]) != config.app_id:
            return api_error(401, f"Die Anwendung {body[TokenField.APP_ID]} ist nicht registriert.")
        stamp = str(body[TokenField.TIMESTAMP])
        try:
            sent_at = parse_utc(stamp)
        except ValueError:
            return api_error(400, f"Ungültiger RequestTimeStamp: {stamp}")
        message = f"{body[TokenField.PRODUCT]}:{body[TokenField.APP_ID]}:{body[TokenField.NONCE]}:{stamp}"
        expected = base64.b64encode(hmac.new(config.api_key, message.encode("utf-8"), hashlib.sha512).digest()).decode()
        if not hmac.compare_digest(expected, str(body[TokenField.SIGNATURE])):
            return api_error(401, "Die HMAC512Signature ist ungültig.")
        if abs(time.time() - sent_at.timestamp()) > TIMESTAMP_WINDOW_SECONDS:
            return api_error(401, "Der RequestTimeStamp liegt außerhalb des erlaubten Zeitfensters (±5 Minuten).")
        if not state.use_nonce(str(body[TokenField.NONCE])):
            return api_error(401, "Die Nonce wurde bereits verwendet (Wiederholungsangriff abgewiesen).")
        if (
            str(body[TokenField.KANZLEI]).lower() != config.kanzlei.lower()
            or str(body[TokenField.DATABASE]).lower() != config.database.lower()
        ):
            return api_error(
                401, f"Kanzlei {body[TokenField.KANZLEI]} / Datenbank {body[TokenField.DATABASE]} ist nicht registriert."
            )
        if str(body[TokenField.USER]) != config.user or str(body[TokenField.PASSWORD]) != config.password:
            return api_error(401, "Anmeldung fehlgeschlagen: Falscher Name oder falsches Kennwort.")
        try:
            role_ok = int(body[TokenField.ROLE]) == config.role
            product_ok = int(body[TokenField.PRODUCT]) == config.product
        except (TypeError, ValueError):
            return api_error(400, "Role und Product müssen Ganzzahlen sein.")
        if not (role_ok and product_ok):
            return api_error(
                401,
                f"Produkt {body[TokenField.PRODUCT]} / Rolle {body[TokenField.ROLE]} ist für "
                f"{body[TokenField.USER]} nicht freigeschaltet.",
            )
        access_token, expires = state.issue_token()
        return web.json_response(
            {TokenResponseField.ACCESS_TOKEN.value: access_token, TokenResponseField.EXPIRATION_UTC.value: _format_expiration(expires)}
        )

    async def discovery(request: web.Request, _: dict[str, str]) -> web.Response:
        wanted = request.query.get("Kanzlei") or request.query.get("kanzlei") or ""
        if wanted.lower() != config.kanzlei.lower():
            return api_error(404, f"Kanzlei {wanted} ist nicht registriert.")
        base = f"{request.scheme}://{request.host}/"
        return web.json_response(
            {DiscoveryField.RELAY_URL.value: base, DiscoveryField.CONNECTOR_URL.value: base, DiscoveryField.SECURITY_GATEWAY.value: base}
        )

    # --- matters and employees ------------------------------------------------------
    async def list_akten(request: web.Request, _: dict[str, str]) -> web.Response:
        items = [state.akten[nr] for nr in sorted(state.akten)]
        return web.json_response(_page(items, request))

    async def get_akte(request: web.Request, params: dict[str, str]) -> web.Response:
        nr = int(params["id"])
        if nr not in state.akten:
            return api_error(404, f"Die Akte {nr} wurde nicht gefunden.")
        return web.json_response(state.akten[nr])

    async def list_mitarbeiter(request: web.Request, _: dict[str, str]) -> web.Response:
        return web.json_response([state.mitarbeiter[k] for k in sorted(state.mitarbeiter)])

    # --- appointments ---------------------------------------------------------------
    def frnr_param(request: web.Request) -> int | None:
        raw = request.query.get(TerminQuery.FRNR)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise Invalid(f'Der Parameter "frnr" muss eine Ganzzahl sein: "{raw}".', TerminQuery.FRNR) from None

    def termin_matches(rec: dict[str, Any], kuerzel: str | None, start: date, end: date) -> bool:
        if kuerzel:
            k = kuerzel.upper()
            anwalt = (rec.get(TerminField.ANWALT) or "").upper()
            sb = (rec.get(TerminField.SB) or "").upper()
            if k == GENERAL_KUERZEL.upper():
                if anwalt not in ("", ALL_KUERZEL):
                    return False
            elif k not in (anwalt, sb):
                return False
        first = parse_wall_clock(rec[TerminField.DATUM]).date()
        last = parse_wall_clock(rec[TerminField.DATUM_BIS]).date()
        return first <= end and last >= start

    async def termine_get(request: web.Request, _: dict[str, str]) -> web.Response:
        frnr = frnr_param(request)
        if frnr is not None:
            rec = state.termine.get(frnr)
            if rec is None:
                return api_error(404, f"Der Termin mit FrNr {frnr} wurde nicht gefunden.")
            return web.json_response(rec)
        raw_from, raw_to = request.query.get(TerminQuery.FROM), request.query.get(TerminQuery.TO)
        if not raw_from or not raw_to:
            raise Invalid('Die Parameter "from" und "to" (oder "frnr") sind erforderlich.', TerminQuery.FROM)
        start, end = _query_date(TerminQuery.FROM, raw_from), _query_date(TerminQuery.TO, raw_to)
        kuerzel = request.query.get(TerminQuery.KUERZEL)
        items = [r for r in state.termine.values() if termin_matches(r, kuerzel, start, end)]
        items.sort(key=lambda r: (r[TerminField.DATUM], r[TerminField.FRNR]))
        return web.json_response(items)

    async def termine_post(request: web.Request, _: dict[str, str]) -> web.Response:
        body = await _json_body(request)
        frnr = state.next_frnr
        rec = clean_termin(body, frnr, format_utc(_now()))
        state.next_frnr += 1
        state.termine[frnr] = rec
        return web.json_response(frnr)

    async def termine_put(request: web.Request, _: dict[str, str]) -> web.Response:
        frnr = frnr_param(request)
        if frnr is None:
            raise Invalid('Der Parameter "frnr" ist erforderlich.', TerminQuery.FRNR)
        if frnr not in state.termine:
            return api_error(404, f"Der Termin mit FrNr {frnr} wurde nicht gefunden.")
        if frnr < 0:
            return api_error(400, f"Der Termin {frnr} ist ein abgeleiteter Termin und kann nicht geändert werden.")
        body = await _json_body(request)
        rec = clean_termin(body, frnr, format_utc(_now()))
        state.termine[frnr] = rec
        return web.json_response(rec)

    async def termine_delete(request: web.Request, _: dict[str, str]) -> web.Response:
        frnr = frnr_param(request)
        if frnr is None:
            raise Invalid('Der Parameter "frnr" ist erforderlich.', TerminQuery.FRNR)
        if state.termine.pop(frnr, None) is None:
            return api_error(404, f"Der Termin mit FrNr {frnr} wurde nicht gefunden.")
        return web.Response(status=200)

    # --- parties ----------------------------------------------------------------------
    def party_or_404(params: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
        betnr = int(params["betnr"])
        return betnr, state.beteiligte.get(betnr)

    def party_missing(betnr: int) -> web.Response:
        return api_error(404, f"Der Beteiligte {betnr} wurde nicht gefunden.")

    async def beteiligte_list(request: web.Request, _: dict[str, str]) -> web.Response:
        items = [state.beteiligte[n] for n in sorted(state.beteiligte)]
        name = request.query.get(BeteiligteQuery.NAME)
        if name:
            needle = name.lower()
            items = [
                p
                for p in items
                if needle in (p.get(BeteiligterField.NAME) or "").lower()
                or needle in (p.get(BeteiligterField.VORNAME) or "").lower()
            ]
        since_raw = request.query.get(BeteiligteQuery.CHANGED_SINCE)
        if since_raw:
            try:
                since = parse_utc(since_raw)
            except ValueError:
                raise Invalid(
                    f'Der Parameter "geaendertSeit" ist kein gültiger Zeitpunkt: "{since_raw}".', BeteiligteQuery.CHANGED_SINCE
                ) from None
            since = since.replace(microsecond=since.microsecond // 1000 * 1000)
            items = [p for p in items if parse_utc(p[BeteiligterField.GEAENDERT_AM]) >= since]
        external = request.query.get(BeteiligteQuery.EXTERNAL_ID)
        if external:
            items = [p for p in items if p.get(BeteiligterField.EXTERNE_ID) == external]
        return web.json_response(_page(items, request))

    async def beteiligte_post(request: web.Request, _: dict[str, str]) -> web.Response:
        body = await _json_body(request)
        betnr = state.next_betnr
        rec = clean_beteiligter(body, betnr, format_utc(_now()))
        state.next_betnr += 1
        state.beteiligte[betnr] = rec
        return web.json_response(rec, status=201)

    async def beteiligter_get(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, rec = party_or_404(params)
        return party_missing(betnr) if rec is None else web.json_response(rec)

    async def beteiligter_put(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, rec = party_or_404(params)
        if rec is None:
            return party_missing(betnr)
        body = await _json_body(request)
        new = clean_beteiligter(body, betnr, format_utc(_now()))
        state.beteiligte[betnr] = new
        return web.json_response(new)

    async def beteiligter_delete(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, rec = party_or_404(params)
        if rec is None:
            return party_missing(betnr)
        linked = state.akten_of(betnr)
        if linked:
            azs = ", ".join(str(a.get(AkteField.AZ) or a[AkteField.NR]) for a in linked)
            return api_error(
                409,
                f"Der Beteiligte {betnr} kann nicht gelöscht werden, da er noch mit {len(linked)} Akte(n) "
                f"verknüpft ist ({azs}).",
            )
        del state.beteiligte[betnr]
        for bank_id in [b for b, owner in state.bank_owner.items() if owner == betnr]:
            state.bankverbindungen.pop(bank_id, None)
            state.bank_owner.pop(bank_id, None)
        return web.Response(status=200)

    # --- bank accounts ----------------------------------------------------------------
    def bank_or_404(params: dict[str, str]) -> tuple[int, int, dict[str, Any] | None]:
        betnr, bank_id = int(params["betnr"]), int(params["id"])
        if state.bank_owner.get(bank_id) != betnr:
            return betnr, bank_id, None
        return betnr, bank_id, state.bankverbindungen.get(bank_id)

    def bank_missing(betnr: int, bank_id: int) -> web.Response:
        return api_error(404, f"Die Bankverbindung {bank_id} des Beteiligten {betnr} wurde nicht gefunden.")

    async def banks_list(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, rec = party_or_404(params)
        if rec is None:
            return party_missing(betnr)
        ids = sorted(b for b, owner in state.bank_owner.items() if owner == betnr)
        return web.json_response([state.bankverbindungen[b] for b in ids])

    async def banks_post(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, rec = party_or_404(params)
        if rec is None:
            return party_missing(betnr)
        body = await _json_body(request)
        bank_id = state.next_bank_id
        bank = clean_bankverbindung(body, bank_id, format_utc(_now()))
        state.next_bank_id += 1
        state.bankverbindungen[bank_id] = bank
        state.bank_owner[bank_id] = betnr
        return web.json_response(bank, status=201)

    async def bank_get(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, bank_id, bank = bank_or_404(params)
        return bank_missing(betnr, bank_id) if bank is None else web.json_response(bank)

    async def bank_put(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, bank_id, bank = bank_or_404(params)
        if bank is None:
            return bank_missing(betnr, bank_id)
        body = await _json_body(request)
        new = clean_bankverbindung(body, bank_id, format_utc(_now()))
        state.bankverbindungen[bank_id] = new
        return web.json_response(new)

    async def bank_delete(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, bank_id, bank = bank_or_404(params)
        if bank is None:
            return bank_missing(betnr, bank_id)
        del state.bankverbindungen[bank_id]
        del state.bank_owner[bank_id]
        return web.Response(status=200)

    # --- routing ----------------------------------------------------------------------
    def route(methods: Iterable[str], path: str, handler: Handler, *, auth: bool = True) -> Route:
        return Route(frozenset(methods), re.compile(f"^{path}$", re.IGNORECASE), handler, auth)

    num = r"(?P<{}>-?\d+)"
    termine = "/api/v1/advonet/termineactivesync"
    party = "/api/v1/advonet/beteiligte/" + num.format("betnr")
    routes = [
        route(["POST"], "/api/v1/token", token, auth=False),
        route(["GET"], "/advonetconfigurator/api/url", discovery, auth=False),
        route(["GET"], "/api/v1/akten", list_akten),
        route(["GET"], "/api/v1/akten/" + num.format("id"), get_akte),
        route(["GET"], "/api/v1/advonet/mitarbeiter", list_mitarbeiter),
        route(["GET"], termine, termine_get),
        route(["POST"], termine, termine_post),
        route(["PUT"], termine, termine_put),
        route(["DELETE"], termine, termine_delete),
        route(["GET"], "/api/v1/advonet/beteiligte", beteiligte_list),
        route(["POST"], "/api/v1/advonet/beteiligte", beteiligte_post),
        route(["GET"], party, beteiligter_get),
        route(["PUT"], party, beteiligter_put),
        route(["DELETE"], party, beteiligter_delete),
        route(["GET"], party + "/bankverbindungen", banks_list),
        route(["POST"], party + "/bankverbindungen", banks_post),
        route(["GET"], party + "/bankverbindungen/" + num.format("id"), bank_get),
        route(["PUT"], party + "/bankverbindungen/" + num.format("id"), bank_put),
        route(["DELETE"], party + "/bankverbindungen/" + num.format("id"), bank_delete),
    ]

    def authorized(request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and bool(value.strip()) and state.token_valid(value.strip())

    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        allowed: set[str] = set()
        for r in routes:
            m = r.pattern.match(path)
            if not m:
                continue
            if request.method not in r.methods:
                allowed |= r.methods
                continue
            if r.auth and not authorized(request):
                return api_error(
                    401,
                    "Der Benutzer ist nicht angemeldet: Bearer-Token fehlt, ist ungültig oder abgelaufen.",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            try:
                return await r.handler(request, {k: v for k, v in m.groupdict().items() if v is not None})
            except Invalid as exc:
                return _invalid_response(exc)
        if allowed:
            return api_error(
                405,
                f"The requested resource does not support http method '{request.method}'.",
                headers={"Allow": ", ".join(sorted(allowed))},
            )
        return api_error(404, f"No HTTP resource was found that matches the request URI '{request.url}'.")

    async def expire_tokens(request: web.Request) -> web.Response:
        return web.json_response({"expired": state.expire_tokens()})

    app.router.add_post("/_sim/expire-tokens", expire_tokens)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
