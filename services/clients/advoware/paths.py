"""Every Advoware path, query parameter, field name and wire format, in one place.

Only the token flow and `TermineActiveSync` are documented (external-apis.md §3, [C]).
Parties (Beteiligte), bank accounts (Bankverbindungen), employees (Mitarbeiter) and
single matters are NOT publicly documented [I]: their paths and field casing below are
our best guess and must be checked against the customer's Swagger. Correct them HERE;
the client (`services.clients.advoware`), the simulator and the sync logic only use the
names defined in this module. `ENDPOINTS` lists every call the client makes (method, path,
query parameters, request and response fields): the contract check
(`python -m services.clients.advoware.contract swagger.json`) compares it with the firm's
Swagger/OpenAPI document before production is switched on.

Paths are relative to the API base (`https://host/`, with `api/v1/...` below it) and have
no leading slash.

Wire formats (appointments, [C] where the spec says so, else [I]):
- `Datum` (start) and `DatumBis` are sent as `YYYY-MM-DDTHH:MM:SSZ` (PHP `Y-m-d\\TH:i:s\\Z`);
  readers must also accept no `Z`, fractions of a second and a bare date. Only the date
  part of `DatumBis` counts: the end is `date(DatumBis) + UhrzeitBis` (`HH:MM:SS`).
- All-day absences (`Abwesenheit=1`) are stored by Advoware with the end one minute before
  midnight: `DatumBis` = the last day, `UhrzeitBis` = `23:59:00` (`ALL_DAY_END_TIME`).
- Recurring appointments (`Dauertermin=1`): `Turnus` is the interval (every N units),
  `TurnusArt` the unit (`TurnusArt` enum below: 1 daily, 2 weekly, 3 monthly, 4 yearly);
  `DatumBis` is then the LAST DAY OF THE SERIES and `UhrzeitBis` the end time of every
  occurrence (occurrences last at most 23:59). A series without end has `DatumBis` in
  `SERIES_FOREVER_YEAR` (2037). Weekly repeats on the weekday of `Datum`, monthly/yearly
  on its day of month.
- `ZuletztGeaendertAm` / `GeaendertAm` are UTC; the simulator sends
  `YYYY-MM-DDTHH:MM:SS.fffZ`, older servers send no `Z` (still UTC): use `parse_utc`.
- Flags (`Abwesenheit`, `Privat`, `Dauertermin`, `Erinnerung`) are integers 0/1.
- `FrNr` < 0 are Advoware's derived special entries (Vortermin, travel times): read-only.
- Whether `Datum` is UTC or the firm's wall-clock time (Europe/Berlin) is not documented:
  `parse_wall_clock` returns a naive datetime and leaves that decision to the caller.

Responses use the casing below, but ASP.NET may serialise camelCase on newer servers
(and binds request bodies case-insensitively): the client passes every record through
`normalize_record`, which maps keys case-insensitively onto the canonical names here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple
from urllib.parse import quote

# --- Paths --------------------------------------------------------------------------

API_PREFIX = "api/v1/"
TOKEN_PATH = "api/v1/Token"
"""Below the security gateway URL (`{securityGateway}api/v1/Token`) [C]."""
DISCOVERY_PATH = "AdvonetConfigurator/api/Url"
"""Below `https://www2.advo-net.net/`; query `Kanzlei=<id>` [C]."""
DISCOVERY_QUERY_KANZLEI = "Kanzlei"

AKTEN_PATH = "api/v1/Akten"  # [C]
TERMINE_PATH = "api/v1/advonet/TermineActiveSync"  # [C]
BETEILIGTE_PATH = "api/v1/advonet/Beteiligte"  # [I]
MITARBEITER_PATH = "api/v1/advonet/Mitarbeiter"  # [I]


AKTE_TEMPLATE = f"{AKTEN_PATH}/{{nr}}"  # [I]
BETEILIGTER_TEMPLATE = f"{BETEILIGTE_PATH}/{{betNr}}"  # [I]
BANKVERBINDUNGEN_TEMPLATE = f"{BETEILIGTER_TEMPLATE}/Bankverbindungen"  # [I]
BANKVERBINDUNG_TEMPLATE = f"{BANKVERBINDUNGEN_TEMPLATE}/{{bankId}}"  # [I]


def _fill(template: str, **values: object) -> str:
    """A path template with its `{name}` segments filled in, each one URL-quoted."""
    return template.format(**{name: quote(str(value), safe="") for name, value in values.items()})


def akte_path(nr: int | str) -> str:
    """One matter [I]."""
    return _fill(AKTE_TEMPLATE, nr=nr)


def beteiligter_path(betnr: int | str) -> str:
    """One party [I]."""
    return _fill(BETEILIGTER_TEMPLATE, betNr=betnr)


def bankverbindungen_path(betnr: int | str) -> str:
    """A party's bank accounts [I]."""
    return _fill(BANKVERBINDUNGEN_TEMPLATE, betNr=betnr)


def bankverbindung_path(betnr: int | str, bank_id: int | str) -> str:
    """One bank account of a party [I]."""
    return _fill(BANKVERBINDUNG_TEMPLATE, betNr=betnr, bankId=bank_id)


# --- Token and discovery -----------------------------------------------------------


class TokenField(StrEnum):
    """Body of `POST {securityGateway}api/v1/Token` [C]."""

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
"""The gateway rejects a `RequestTimeStamp` further than this from its clock [I]."""

# --- Errors --------------------------------------------------------------------------

ERROR_MESSAGE_FIELD = "Message"
"""ASP.NET error bodies: `{"Message": "...", "ModelState": {...}?}`."""


# --- Appointments (TermineActiveSync) ----------------------------------------------


class TerminQuery(StrEnum):
    FROM = "from"  # YYYY-MM-DD
    TO = "to"  # YYYY-MM-DD
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
    """Reminder time (UTC), used with `Erinnerung=1` [I, seen in the ActiveSync backend]."""


TERMIN_READ_ONLY = frozenset({TerminField.FRNR, TerminField.ZULETZT_GEAENDERT_AM})
TERMIN_FLAGS = frozenset(
    {TerminField.ABWESENHEIT, TerminField.PRIVAT, TerminField.DAUERTERMIN, TerminField.ERINNERUNG}
)


class Flag(IntEnum):
    NEIN = 0
    JA = 1


class TurnusArt(IntEnum):
    """Unit of a recurring appointment's interval (`Turnus`) [I]."""

    KEINE = 0
    TAEGLICH = 1
    WOECHENTLICH = 2
    MONATLICH = 3
    JAEHRLICH = 4


GENERAL_KUERZEL = "Allgemein"
"""`kuerzel=Allgemein` lists appointments without a lawyer (`Anwalt` empty or `ALLE`) [I]."""
ALL_KUERZEL = "ALLE"
ALL_DAY_END_TIME = "23:59:00"
SERIES_FOREVER_YEAR = 2037

# --- Matters (Akten) ------------------------------------------------------------------


class AkteField(StrEnum):
    NR = "Nr"  # the matter number, also `TerminField.NR`
    AZ = "Az"
    RUBRUM = "Rubrum"
    WEGEN = "Wegen"
    SACHBEARBEITER = "Sachbearbeiter"
    BETEILIGTE = "Beteiligte"  # [{"BetNr": int, "Rolle": str}]
    ANGELEGT_AM = "AngelegtAm"
    ABGELEGT = "Abgelegt"


class AkteBeteiligterField(StrEnum):
    BETNR = "BetNr"
    ROLLE = "Rolle"


# --- Parties (Beteiligte) [I] ------------------------------------------------------


class BeteiligteQuery(StrEnum):
    SKIP = "skip"
    TAKE = "take"
    NAME = "name"  # case-insensitive substring of Name or Vorname
    CHANGED_SINCE = "geaendertSeit"  # ISO timestamp, UTC; GeaendertAm >= value
    EXTERNAL_ID = "externeId"  # exact match on ExterneId


class BeteiligterField(StrEnum):
    BETNR = "BetNr"
    ANREDE = "Anrede"
    TITEL = "Titel"
    NAME = "Name"  # surname, or the company name
    VORNAME = "Vorname"
    RECHTSFORM = "Rechtsform"  # e.g. "natürliche Person", "GmbH"
    GEBURTSDATUM = "Geburtsdatum"  # YYYY-MM-DD (served as YYYY-MM-DDT00:00:00)
    EMAIL = "Email"
    TELEFON = "Telefon"
    MOBIL = "Mobil"
    STRASSE = "Strasse"
    PLZ = "PLZ"
    ORT = "Ort"
    LAND = "Land"  # ISO 3166 alpha-2, e.g. "DE"
    EXTERNE_ID = "ExterneId"
    """Free external reference: our sync stores the EspoCRM id here (find-after-crash)."""
    GEAENDERT_AM = "GeaendertAm"  # UTC, read-only


BETEILIGTER_READ_ONLY = frozenset({BeteiligterField.BETNR, BeteiligterField.GEAENDERT_AM})
PARTY_EXTERNAL_ID_FIELD = BeteiligterField.EXTERNE_ID
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

# --- Bank accounts (Bankverbindungen) [I] ------------------------------------------


class BankverbindungField(StrEnum):
    ID = "Id"
    IBAN = "IBAN"
    BIC = "BIC"
    BANK = "Bank"
    KONTOINHABER = "Kontoinhaber"
    GEAENDERT_AM = "GeaendertAm"


BANKVERBINDUNG_READ_ONLY = frozenset({BankverbindungField.ID, BankverbindungField.GEAENDERT_AM})

# --- Employees (Mitarbeiter) [I] ---------------------------------------------------


class MitarbeiterField(StrEnum):
    KUERZEL = "Kuerzel"
    NAME = "Name"
    VORNAME = "Vorname"
    EMAIL = "Email"
    AKTIV = "Aktiv"  # JSON boolean


# --- The contract: every call the client makes -------------------------------------


class Endpoint(NamedTuple):
    """One call of the client (services.clients.advoware.api): the path template (`{name}`
    segments), the query parameters it sends, the fields of its JSON body (`request`, without
    `read_only`) and the fields it reads from the answer (`response`)."""

    method: str
    path: str
    query: tuple[str, ...] = ()
    request: type[StrEnum] | None = None
    read_only: frozenset[Any] = frozenset()
    response: type[StrEnum] | None = None


_TERMIN_WINDOW = (TerminQuery.FROM.value, TerminQuery.TO.value, TerminQuery.KUERZEL.value)
_FRNR = (TerminQuery.FRNR.value,)
_PAGE = (BeteiligteQuery.SKIP.value, BeteiligteQuery.TAKE.value)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", TERMINE_PATH, _TERMIN_WINDOW, response=TerminField),
    Endpoint("GET", TERMINE_PATH, _FRNR, response=TerminField),
    Endpoint("POST", TERMINE_PATH, request=TerminField, read_only=TERMIN_READ_ONLY),
    Endpoint("PUT", TERMINE_PATH, _FRNR, request=TerminField, read_only=TERMIN_READ_ONLY - {TerminField.FRNR}),
    Endpoint("DELETE", TERMINE_PATH, _FRNR),
    Endpoint("GET", MITARBEITER_PATH, response=MitarbeiterField),
    Endpoint("GET", AKTEN_PATH, _PAGE, response=AkteField),
    Endpoint("GET", AKTE_TEMPLATE, response=AkteField),
    Endpoint("GET", BETEILIGTE_PATH, (*_PAGE, *(q.value for q in BeteiligteQuery if q.value not in _PAGE)), response=BeteiligterField),
    Endpoint("POST", BETEILIGTE_PATH, request=BeteiligterField, read_only=BETEILIGTER_READ_ONLY, response=BeteiligterField),
    Endpoint("GET", BETEILIGTER_TEMPLATE, response=BeteiligterField),
    Endpoint("PUT", BETEILIGTER_TEMPLATE, request=BeteiligterField, read_only=BETEILIGTER_READ_ONLY, response=BeteiligterField),
    Endpoint("DELETE", BETEILIGTER_TEMPLATE),
    Endpoint("GET", BANKVERBINDUNGEN_TEMPLATE, response=BankverbindungField),
    Endpoint("POST", BANKVERBINDUNGEN_TEMPLATE, request=BankverbindungField, read_only=BANKVERBINDUNG_READ_ONLY, response=BankverbindungField),
    Endpoint("PUT", BANKVERBINDUNG_TEMPLATE, request=BankverbindungField, read_only=BANKVERBINDUNG_READ_ONLY, response=BankverbindungField),
    Endpoint("DELETE", BANKVERBINDUNG_TEMPLATE),
)
"""The token (`TOKEN_PATH`, on the security gateway) and discovery (`DISCOVERY_PATH`) calls
are not in the API's Swagger document and not listed here."""

# --- Formats ------------------------------------------------------------------------

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DATE_FORMAT = "%Y-%m-%d"
TIME_FORMAT = "%H:%M:%S"

_DT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_TIME_RE = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$")


def _parse(value: str) -> tuple[datetime, str | None]:
    m = _DT_RE.match(value.strip())
    if not m:
        raise ValueError(f"not an Advoware date/time: {value!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro)
    return dt, tz


def parse_wall_clock(value: str) -> datetime:
    """`Datum`-style value → naive datetime as written (a `Z` or offset is ignored)."""
    return _parse(value)[0]


def parse_utc(value: str) -> datetime:
    """A UTC timestamp (`ZuletztGeaendertAm`, `expiration_utc`, ...) → aware UTC datetime.

    Accepts 0-9 fractional digits, `Z`, `+HH:MM`/`+HHMM` offsets and no zone (taken as UTC).
    """
    dt, tz = _parse(value)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        return (dt - sign * offset).replace(tzinfo=UTC)
    return dt.replace(tzinfo=UTC)


def parse_time(value: str) -> tuple[int, int, int]:
    """`UhrzeitBis` (`HH:MM:SS`, also `HH:MM`) → (hour, minute, second)."""
    m = _TIME_RE.match(value.strip())
    if not m:
        raise ValueError(f"not an Advoware time: {value!r}")
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 23 or mi > 59 or s > 59:
        raise ValueError(f"not an Advoware time: {value!r}")
    return h, mi, s


def format_datetime(dt: datetime) -> str:
    """A wall-clock datetime as `Datum`/`DatumBis` (`YYYY-MM-DDTHH:MM:SSZ`)."""
    return dt.strftime(DATETIME_FORMAT)


def format_date(d: date) -> str:
    return d.strftime(DATE_FORMAT)


def format_utc(dt: datetime) -> str:
    """A UTC timestamp as the API writes them (`YYYY-MM-DDTHH:MM:SS.fffZ`)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def normalize_record(record: Mapping[str, Any], fields: type[StrEnum]) -> dict[str, Any]:
    """Map a record's keys case-insensitively onto the canonical names of `fields`.

    Unknown keys are kept as they are.
    """
    canonical = {f.value.lower(): f.value for f in fields}
    return {canonical.get(str(k).lower(), k): v for k, v in record.items()}
