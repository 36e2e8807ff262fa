"""Field mapping, validation and the three-way merge for the EspoCRM ↔ Advoware sync of
parties (CBeteiligte ↔ Beteiligte) and bank accounts (CBankverbindungen ↔ Bankverbindungen).

Pure functions, no I/O. Both sides are first translated into one *canonical* form (a dict
keyed by `PartyField` / `BankField`, EspoCRM attribute names, values normalised: strings
stripped, blanks → None, dates `YYYY-MM-DD`, country ISO alpha-2 upper case, IBAN/BIC upper
case without spaces). Comparisons, snapshots and the merge all work on that form. IBAN and
BIC are validated by `schwifty` (country-specific IBAN length and format, check digits).

Name rule: Advoware has `Name` (surname, or the company name) and `Vorname`; EspoCRM has
`firstName`, `lastName` and a display `name`. Canonical `lastName` = EspoCRM `lastName`, or
its `name` when `lastName` is empty (companies); EspoCRM's `name` is derived
("firstName lastName") whenever we write the name fields to EspoCRM.

Conflict rule (three-way merge against the last synced snapshot): a field changed on one
side only is copied to the other; a field changed on both sides to different values is a
conflict, won by the side with the newer modification time (EspoCRM `modifiedAt` vs
Advoware `GeaendertAm`, compared at whole seconds because EspoCRM stores no fractions);
on a tie, or when a time is unknown, Advoware wins (it is the system of record for its
own data). Conflicts are reported field by field so they can be recorded and logged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from services.clients.advoware import paths as P

# --------------------------------------------------------------------------- canonical fields


class PartyField(StrEnum):
    """Canonical (synced) fields of a party, named like the EspoCRM attributes."""

    FIRST_NAME = "firstName"
    LAST_NAME = "lastName"
    RECHTSFORM = "rechtsform"
    GEBURTSDATUM = "geburtsdatum"
    EMAIL = "emailAddress"
    PHONE = "phoneNumber"
    STREET = "addressStreet"
    CITY = "addressCity"
    POSTAL_CODE = "addressPostalCode"
    COUNTRY = "addressCountry"


class BankField(StrEnum):
    """Canonical (synced) fields of a bank account, named like the EspoCRM attributes."""

    IBAN = "iban"
    BIC = "bic"
    BANK_NAME = "bankName"
    KONTOINHABER = "kontoinhaber"


class Side(StrEnum):
    """Which system a value or a decision comes from."""

    ESPOCRM = "espocrm"
    ADVOWARE = "advoware"


PARTY_TO_ADVOWARE: dict[PartyField, P.BeteiligterField] = {
    PartyField.FIRST_NAME: P.BeteiligterField.VORNAME,
    PartyField.LAST_NAME: P.BeteiligterField.NAME,
    PartyField.RECHTSFORM: P.BeteiligterField.RECHTSFORM,
    PartyField.GEBURTSDATUM: P.BeteiligterField.GEBURTSDATUM,
    PartyField.EMAIL: P.BeteiligterField.EMAIL,
    PartyField.PHONE: P.BeteiligterField.TELEFON,
    PartyField.STREET: P.BeteiligterField.STRASSE,
    PartyField.CITY: P.BeteiligterField.ORT,
    PartyField.POSTAL_CODE: P.BeteiligterField.PLZ,
    PartyField.COUNTRY: P.BeteiligterField.LAND,
}

BANK_TO_ADVOWARE: dict[BankField, P.BankverbindungField] = {
    BankField.IBAN: P.BankverbindungField.IBAN,
    BankField.BIC: P.BankverbindungField.BIC,
    BankField.BANK_NAME: P.BankverbindungField.BANK,
    BankField.KONTOINHABER: P.BankverbindungField.KONTOINHABER,
}

ESPO_NAME = "name"
"""EspoCRM's display name of a party (derived from first and last name when we write)."""

# Country names seen in the firm's CRM → ISO 3166 alpha-2 (Advoware's `Land`).
_COUNTRY_ALIASES: dict[str, str] = {
    "deutschland": "DE",
    "germany": "DE",
    "österreich": "AT",
    "oesterreich": "AT",
    "austria": "AT",
    "schweiz": "CH",
    "switzerland": "CH",
    "niederlande": "NL",
    "netherlands": "NL",
    "frankreich": "FR",
    "france": "FR",
    "italien": "IT",
    "italy": "IT",
}

Canonical = dict[str, Any]

# --------------------------------------------------------------------------- normalisation


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def norm_date(value: Any) -> str | None:
    """`YYYY-MM-DD` from a date, a datetime or text with a date prefix; None when blank.

    Unparseable text is kept as it is (validation reports it)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = _text(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        return text


def norm_country(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    alias = _COUNTRY_ALIASES.get(text.casefold())
    if alias:
        return alias
    return text.upper() if len(text) == 2 else text


def norm_compact_upper(value: Any) -> str | None:
    """IBAN/BIC: spaces removed, upper case; None when blank."""
    text = _text(value)
    return None if text is None else re.sub(r"\s+", "", text).upper() or None


_PARTY_NORMALISERS = {
    PartyField.GEBURTSDATUM: norm_date,
    PartyField.COUNTRY: norm_country,
}
_BANK_NORMALISERS = {BankField.IBAN: norm_compact_upper, BankField.BIC: norm_compact_upper}


def normalize_party(values: Mapping[str, Any]) -> Canonical:
    """A canonical party from a mapping keyed by canonical names (missing keys → None)."""
    return {f.value: _PARTY_NORMALISERS.get(f, _text)(values.get(f.value)) for f in PartyField}


def normalize_bank(values: Mapping[str, Any]) -> Canonical:
    """A canonical bank account from a mapping keyed by canonical names (missing keys → None)."""
    return {f.value: _BANK_NORMALISERS.get(f, _text)(values.get(f.value)) for f in BankField}


# --------------------------------------------------------------------------- mapping


def espo_party_to_canonical(record: Mapping[str, Any]) -> Canonical:
    """CBeteiligte attributes → canonical party (`lastName` falls back to `name`)."""
    values = {f.value: record.get(f.value) for f in PartyField}
    if _text(values[PartyField.LAST_NAME.value]) is None:
        values[PartyField.LAST_NAME.value] = record.get(ESPO_NAME)
    return normalize_party(values)


def advoware_party_to_canonical(party: Mapping[str, Any]) -> Canonical:
    """An Advoware Beteiligter (any key casing) → canonical party."""
    rec = P.normalize_record(party, P.BeteiligterField)
    return normalize_party({f.value: rec.get(a.value) for f, a in PARTY_TO_ADVOWARE.items()})


def display_name(first: str | None, last: str | None) -> str | None:
    return " ".join(p for p in (first, last) if p) or None


def canonical_party_to_espo(values: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical party fields (all or some) → CBeteiligte attributes to write.

    When a name field is included, `name` is derived from both name fields (`values` must
    then hold both, e.g. the merged record)."""
    out: dict[str, Any] = {}
    for f in PartyField:
        if f.value in values:
            out[f.value] = values[f.value]
    if PartyField.FIRST_NAME.value in values or PartyField.LAST_NAME.value in values:
        out[ESPO_NAME] = display_name(values.get(PartyField.FIRST_NAME.value), values.get(PartyField.LAST_NAME.value))
    return out


def canonical_party_to_advoware(values: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical party fields (all or some) → Advoware Beteiligter fields to write."""
    return {PARTY_TO_ADVOWARE[PartyField(k)].value: v for k, v in values.items() if k in _PARTY_KEYS}


def espo_bank_to_canonical(record: Mapping[str, Any]) -> Canonical:
    return normalize_bank({f.value: record.get(f.value) for f in BankField})


def advoware_bank_to_canonical(bank: Mapping[str, Any]) -> Canonical:
    rec = P.normalize_record(bank, P.BankverbindungField)
    return normalize_bank({f.value: rec.get(a.value) for f, a in BANK_TO_ADVOWARE.items()})


def canonical_bank_to_espo(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f.value: values[f.value] for f in BankField if f.value in values}


def canonical_bank_to_advoware(values: Mapping[str, Any]) -> dict[str, Any]:
    return {BANK_TO_ADVOWARE[BankField(k)].value: v for k, v in values.items() if k in _BANK_KEYS}


_PARTY_KEYS = frozenset(f.value for f in PartyField)
_BANK_KEYS = frozenset(f.value for f in BankField)

# --------------------------------------------------------------------------- modification times


def advoware_modified_at(record: Mapping[str, Any]) -> datetime | None:
    """`GeaendertAm` of an Advoware record as aware UTC, None when missing/unreadable."""
    value = P.normalize_record(record, P.BeteiligterField).get(P.BeteiligterField.GEAENDERT_AM.value)
    if not value:
        return None
    try:
        return P.parse_utc(str(value))
    except ValueError:
        return None


def espo_modified_at(record: Mapping[str, Any]) -> datetime | None:
    """`modifiedAt` of an EspoCRM record as aware UTC, None when missing/unreadable."""
    from services.platform.models import parse_espo_datetime

    value = record.get("modifiedAt")
    if not value:
        return None
    try:
        return parse_espo_datetime(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------- validation

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def iban_is_valid(iban: str | None) -> bool:
    """ISO 13616 by `schwifty`: allowed characters, the country's IBAN length and BBAN format
    (from the IBAN registry), and the mod-97 check digits. Spaces and case do not matter."""
    value = norm_compact_upper(iban)
    if not value:
        return False
    try:
        IBAN(value)
    except SchwiftyException:
        return False
    return True


def bic_is_valid(bic: str | None) -> bool:
    """ISO 9362 by `schwifty` (SWIFT-compliant: a letters-only bank code): 8 or 11 characters,
    bank code, a known country, location and branch code. Spaces and case do not matter."""
    value = norm_compact_upper(bic)
    if not value:
        return False
    try:
        BIC(value, enforce_swift_compliance=True)
    except SchwiftyException:
        return False
    return True


def validate_party(values: Mapping[str, Any]) -> list[str]:
    """Reasons a canonical party cannot be written to Advoware (empty list: fine)."""
    errors: list[str] = []
    if not values.get(PartyField.LAST_NAME.value):
        errors.append("Pflichtfeld fehlt: lastName (oder name) – Advoware verlangt einen Namen")
    email = values.get(PartyField.EMAIL.value)
    if email and not _EMAIL_RE.match(email):
        errors.append(f"ungültige E-Mail-Adresse: {email}")
    birth = values.get(PartyField.GEBURTSDATUM.value)
    if birth:
        try:
            date.fromisoformat(str(birth))
        except ValueError:
            errors.append(f"ungültiges Geburtsdatum: {birth}")
    return errors


def validate_bank(values: Mapping[str, Any]) -> list[str]:
    """Reasons a canonical bank account cannot be written to Advoware (empty list: fine)."""
    errors: list[str] = []
    iban = values.get(BankField.IBAN.value)
    if not iban:
        errors.append("Pflichtfeld fehlt: iban")
    elif not iban_is_valid(iban):
        errors.append(f"ungültige IBAN (Format oder Prüfsumme): {iban}")
    bic = values.get(BankField.BIC.value)
    if bic and not bic_is_valid(bic):
        errors.append(f"ungültige BIC: {bic}")
    return errors


# --------------------------------------------------------------------------- three-way merge


@dataclass(frozen=True)
class FieldConflict:
    """A field changed on both sides since the last sync."""

    field: str
    base: Any
    espocrm: Any
    advoware: Any
    winner: Side

    def describe(self) -> str:
        return f"{self.field} (EspoCRM={self.espocrm!r}, Advoware={self.advoware!r}, gewonnen: {self.winner.value})"


@dataclass
class MergeResult:
    """What to write where so that both sides end up equal to `merged`."""

    merged: Canonical
    to_espocrm: Canonical = field(default_factory=dict)
    to_advoware: Canonical = field(default_factory=dict)
    conflicts: list[FieldConflict] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.to_espocrm and not self.to_advoware

    def conflict_note(self) -> str | None:
        """Text for `syncError` listing the conflicting fields, or None."""
        if not self.conflicts:
            return None
        winner = self.conflicts[0].winner
        rule = "neuere Änderung gewinnt (modifiedAt/GeaendertAm), bei Gleichstand Advoware"
        fields = "; ".join(c.describe() for c in self.conflicts)
        return f"Konflikt in {len(self.conflicts)} Feld(ern), Regel: {rule}. Gewinner: {winner.value}. Felder: {fields}"


def conflict_winner(espo_modified: datetime | None, advo_modified: datetime | None) -> Side:
    """The documented rule: newer modification (whole seconds) wins; tie/unknown → Advoware."""
    if espo_modified is None or advo_modified is None:
        return Side.ADVOWARE
    e = espo_modified.astimezone(UTC).replace(microsecond=0)
    a = advo_modified.astimezone(UTC).replace(microsecond=0)
    return Side.ESPOCRM if e > a else Side.ADVOWARE


def three_way_merge(
    base: Mapping[str, Any] | None,
    espo: Mapping[str, Any],
    advo: Mapping[str, Any],
    *,
    espo_modified: datetime | None = None,
    advo_modified: datetime | None = None,
    fields: list[str] | None = None,
) -> MergeResult:
    """Merge two canonical records against the last synced snapshot `base`.

    Without a base (first sync of an existing pair, lost snapshot) every differing field
    counts as changed on both sides, i.e. as a conflict decided by `conflict_winner`.
    """
    keys = fields if fields is not None else list(dict.fromkeys([*espo.keys(), *advo.keys()]))
    winner = conflict_winner(espo_modified, advo_modified)
    merged: Canonical = {}
    result = MergeResult(merged=merged)
    for key in keys:
        e, a = espo.get(key), advo.get(key)
        if e == a:
            merged[key] = e
            continue
        b = base.get(key) if base is not None else _MISSING
        if base is not None and e == b:
            merged[key] = a  # changed in Advoware only
        elif base is not None and a == b:
            merged[key] = e  # changed in EspoCRM only
        else:
            merged[key] = e if winner is Side.ESPOCRM else a
            result.conflicts.append(FieldConflict(key, None if b is _MISSING else b, e, a, winner))
        if merged[key] != e:
            result.to_espocrm[key] = merged[key]
        if merged[key] != a:
            result.to_advoware[key] = merged[key]
    return result


_MISSING: Any = object()


def party_fields() -> list[str]:
    return [f.value for f in PartyField]


def bank_fields() -> list[str]:
    return [f.value for f in BankField]
