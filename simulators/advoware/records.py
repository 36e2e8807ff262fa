"""Advoware simulator: request validation and record cleaning (ASP.NET-style 400s, IBAN/BIC, dates)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from simulators.advoware.wire import (
    BETEILIGTER_READ_ONLY,
    ERROR_MESSAGE_FIELD,
    TERMIN_FLAGS,
    BankverbindungField,
    BeteiligterField,
    TerminField,
    TurnusArt,
    format_datetime,
    normalize_record,
    parse_time,
    parse_wall_clock,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_expiration(dt: datetime) -> str:
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


def invalid_response(exc: Invalid) -> web.Response:
    extra: dict[str, Any] = {}
    if exc.field:
        extra["ModelState"] = {exc.field: [exc.message]}
    return api_error(400, exc.message, **extra)


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


def time_of_day(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f'Das Feld "{field}" hat kein gültiges Zeitformat (HH:MM:SS): "{value}".', field)
    try:
        h, m, s = parse_time(value)
    except ValueError:
        raise Invalid(f'Das Feld "{field}" hat kein gültiges Zeitformat (HH:MM:SS): "{value}".', field) from None
    return f"{h:02d}:{m:02d}:{s:02d}"


def query_date(name: str, value: str) -> date:
    try:
        return parse_wall_clock(value).date()
    except ValueError:
        raise Invalid(f'Der Parameter "{name}" ist kein gültiges Datum (JJJJ-MM-TT): "{value}".', name) from None


def query_int(name: str, value: str | None, default: int, maximum: int | None = None) -> int:
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
        rec[TerminField.UHRZEIT_BIS.value] = time_of_day(TerminField.UHRZEIT_BIS, body[TerminField.UHRZEIT_BIS])
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


