"""The simulator's own knowledge of Advoware's wire format (external-apis.md §3).

Written from the vendor's documented behaviour, NOT imported from the project: when the
project's client (`services`) gets a path, a field's casing or a date format wrong, the
tests against this simulator fail instead of agreeing with the client by construction.

Documented [C]: the token body (`AppID`, `Kanzlei`, `Database`, `User`, `Role`=2,
`Product`=64, `Password`, `Nonce`, `HMAC512Signature`, `RequestTimeStamp`) and answer
(`access_token`, `expiration_utc`), the discovery answer (`relayUrl`, `connectorUrl`,
`securityGateway`), `api/v1/Akten` and `api/v1/advonet/TermineActiveSync` with
`from`/`to`/`kuerzel`/`frnr` and PascalCase fields (`FrNr`, `Text`, `Datum`
`Y-m-dTH:i:sZ`, `DatumBis`, `UhrzeitBis` `H:i:s`, `Abwesenheit`, `Ort`, `Notiz`, `Privat`,
`Anwalt`, `Sb`, `Nr`, `ZuletztGeaendertAm`, `Dauertermin`, `Turnus`, `TurnusArt`,
`Erinnerung`). The party, bank-account and employee resources are NOT documented [I]:
the spec names `api/v1/advonet/Beteiligte`, `.../Beteiligte/{betNr}/Bankverbindungen`
and `api/v1/advonet/Mitarbeiter`; their field names here are the simulator's assumption.
ASP.NET binds request bodies case-insensitively: `canonical_keys` does the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any

# --- paths (matched case-insensitively, like ASP.NET routing) ------------------------

TOKEN_ROUTE = "/api/v1/token"
DISCOVERY_ROUTE = "/advonetconfigurator/api/url"
AKTEN_ROUTE = "/api/v1/akten"
TERMINE_ROUTE = "/api/v1/advonet/termineactivesync"
BETEILIGTE_ROUTE = "/api/v1/advonet/beteiligte"
MITARBEITER_ROUTE = "/api/v1/advonet/mitarbeiter"
BANKVERBINDUNGEN_SEGMENT = "bankverbindungen"

# --- token, discovery, errors ---------------------------------------------------------


class TokenField(StrEnum):
    APP_ID = "AppID"
    KANZLEI = "Kanzlei"
    DATABASE = "Database"
    USER = "User"
    ROLE = "Role"
    PRODUCT = "Product"
    PASSWORD = "Password"
    NONCE = "Nonce"
    SIGNATURE = "HMAC512Signature"
    TIMESTAMP = "RequestTimeStamp"


class TokenResponseField(StrEnum):
    ACCESS_TOKEN = "access_token"
    EXPIRATION_UTC = "expiration_utc"


class DiscoveryField(StrEnum):
    RELAY_URL = "relayUrl"
    CONNECTOR_URL = "connectorUrl"
    SECURITY_GATEWAY = "securityGateway"


DEFAULT_ROLE = 2
DEFAULT_PRODUCT = 64
TIMESTAMP_WINDOW_SECONDS = 300
ERROR_MESSAGE_FIELD = "Message"

# --- appointments ---------------------------------------------------------------------


class TerminQuery(StrEnum):
    FROM = "from"
    TO = "to"
    KUERZEL = "kuerzel"
    FRNR = "frnr"


class TerminField(StrEnum):
    FRNR = "FrNr"
    TEXT = "Text"
    DATUM = "Datum"
    DATUM_BIS = "DatumBis"
    UHRZEIT_BIS = "UhrzeitBis"
    ABWESENHEIT = "Abwesenheit"
    ORT = "Ort"
    NOTIZ = "Notiz"
    PRIVAT = "Privat"
    ANWALT = "Anwalt"
    SB = "Sb"
    NR = "Nr"
    ZULETZT_GEAENDERT_AM = "ZuletztGeaendertAm"
    DAUERTERMIN = "Dauertermin"
    TURNUS = "Turnus"
    TURNUS_ART = "TurnusArt"
    ERINNERUNG = "Erinnerung"
    ERINNERUNGS_DATUM = "ErinnerungsDatum"


TERMIN_FLAGS = (TerminField.ABWESENHEIT, TerminField.PRIVAT, TerminField.DAUERTERMIN, TerminField.ERINNERUNG)


class TurnusArt(IntEnum):
    """Unit of a series' interval: none, daily, weekly, monthly, yearly."""

    KEINE = 0
    TAEGLICH = 1
    WOECHENTLICH = 2
    MONATLICH = 3
    JAEHRLICH = 4


GENERAL_KUERZEL = "Allgemein"
ALL_KUERZEL = "ALLE"

# --- matters, parties, bank accounts, employees ---------------------------------------


class AkteField(StrEnum):
    NR = "Nr"
    AZ = "Az"
    RUBRUM = "Rubrum"
    WEGEN = "Wegen"
    SACHBEARBEITER = "Sachbearbeiter"
    BETEILIGTE = "Beteiligte"
    ANGELEGT_AM = "AngelegtAm"
    ABGELEGT = "Abgelegt"


class AkteBeteiligterField(StrEnum):
    BETNR = "BetNr"
    ROLLE = "Rolle"


class BeteiligteQuery(StrEnum):
    SKIP = "skip"
    TAKE = "take"
    NAME = "name"
    CHANGED_SINCE = "geaendertSeit"
    EXTERNAL_ID = "externeId"


class BeteiligterField(StrEnum):
    BETNR = "BetNr"
    ANREDE = "Anrede"
    TITEL = "Titel"
    NAME = "Name"
    VORNAME = "Vorname"
    RECHTSFORM = "Rechtsform"
    GEBURTSDATUM = "Geburtsdatum"
    EMAIL = "Email"
    TELEFON = "Telefon"
    MOBIL = "Mobil"
    STRASSE = "Strasse"
    PLZ = "PLZ"
    ORT = "Ort"
    LAND = "Land"
    EXTERNE_ID = "ExterneId"
    GEAENDERT_AM = "GeaendertAm"


BETEILIGTER_READ_ONLY = frozenset({BeteiligterField.BETNR, BeteiligterField.GEAENDERT_AM})
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class BankverbindungField(StrEnum):
    ID = "Id"
    IBAN = "IBAN"
    BIC = "BIC"
    BANK = "Bank"
    KONTOINHABER = "Kontoinhaber"
    GEAENDERT_AM = "GeaendertAm"


class MitarbeiterField(StrEnum):
    KUERZEL = "Kuerzel"
    NAME = "Name"
    VORNAME = "Vorname"
    EMAIL = "Email"
    AKTIV = "Aktiv"


# --- date and time formats --------------------------------------------------------------

_STAMP = re.compile(
    r"^(?P<d>\d{4}-\d{2}-\d{2})(?:[T ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,9}))?)?)?"
    r"(?P<z>Z|[+-]\d{2}:?\d{2})?$"
)
_CLOCK = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$")


def _split(value: str) -> tuple[datetime, str | None]:
    m = _STAMP.match(value.strip())
    if m is None:
        raise ValueError(f"not an Advoware date/time: {value!r}")
    day = datetime.strptime(m["d"], "%Y-%m-%d")
    micro = int((m["f"] or "0")[:6].ljust(6, "0"))
    return day.replace(hour=int(m["h"] or 0), minute=int(m["mi"] or 0), second=int(m["s"] or 0), microsecond=micro), m["z"]


def parse_wall_clock(value: str) -> datetime:
    """`Datum`-style text → naive datetime as written; a zone suffix is ignored."""
    return _split(value)[0]


def parse_utc(value: str) -> datetime:
    """A UTC stamp (`ZuletztGeaendertAm`, `RequestTimeStamp`) → aware datetime; no zone = UTC."""
    dt, zone = _split(value)
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        dt = dt - offset if zone[0] == "+" else dt + offset
    return dt.replace(tzinfo=UTC)


def parse_time(value: str) -> tuple[int, int, int]:
    """`UhrzeitBis` (`H:i:s`, also `H:i`) → (hour, minute, second)."""
    m = _CLOCK.match(value.strip())
    if m is None:
        raise ValueError(f"not an Advoware time: {value!r}")
    hour, minute, second = int(m[1]), int(m[2]), int(m[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"not an Advoware time: {value!r}")
    return hour, minute, second


def format_datetime(dt: datetime) -> str:
    """`Datum`/`DatumBis` as the API writes them: `Y-m-dTH:i:sZ`."""
    return f"{dt:%Y-%m-%dT%H:%M:%S}Z"


def format_utc(dt: datetime) -> str:
    """A change stamp: UTC with milliseconds, `YYYY-MM-DDTHH:MM:SS.fffZ`."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def normalize_record(record: Mapping[str, Any], fields: type[StrEnum]) -> dict[str, Any]:
    """Keys matched case-insensitively onto `fields` (ASP.NET model binding); others kept."""
    by_lower = {f.value.lower(): f.value for f in fields}
    return {by_lower.get(str(key).lower(), key): value for key, value in record.items()}
