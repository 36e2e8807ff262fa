"""What operators can look up: the entity types of the ops API, how their names are spelled in
a path, and where each type's sync bookkeeping lives (ledger kinds, activity entities).

Rules: a type is named by its ops name (`document`, `party`, `bank_account`, `account`,
`eviction_case`, `employee`) or by its EspoCRM entity type (`CDokumente`, `CBeteiligte`,
`CBankverbindungen`, `Account`, `Raeumungsklage`); an EspoCRM id matches
services.platform.models.ID_PATTERN, an employee's Kürzel is 1-50 characters without
whitespace or `:`. Path parameters arrive percent-encoded (engine 0.8.3, row H4) and are
decoded here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

from services.platform.ledger.policies import SyncKind
from services.platform.models import ID_PATTERN, EntityType


class OpsEntityType(StrEnum):
    """What the ops API shows, by the names operators use (EspoCRM type in ESPOCRM_TYPES)."""

    DOCUMENT = "document"  # CDokumente → an xAI file in its entities' collections
    PARTY = "party"  # CBeteiligte ↔ Advoware Beteiligte (and its own collection)
    BANK_ACCOUNT = "bank_account"  # CBankverbindungen ↔ Advoware Bankverbindungen
    ACCOUNT = "account"  # Account: owns an xAI collection
    EVICTION_CASE = "eviction_case"  # Raeumungsklage: owns an xAI collection
    EMPLOYEE = "employee"  # an Advoware Kürzel ↔ its Google calendar (CALENDAR_MAPPING)


ESPOCRM_TYPES: dict[OpsEntityType, EntityType] = {
    OpsEntityType.DOCUMENT: EntityType.DOKUMENTE,
    OpsEntityType.PARTY: EntityType.BETEILIGTE,
    OpsEntityType.BANK_ACCOUNT: EntityType.BANKVERBINDUNGEN,
    OpsEntityType.ACCOUNT: EntityType.ACCOUNT,
    OpsEntityType.EVICTION_CASE: EntityType.RAEUMUNGSKLAGE,
}
"""The EspoCRM entity type of every ops type but `employee` (an Advoware Kürzel)."""

_BY_ESPOCRM = {v.value: k for k, v in ESPOCRM_TYPES.items()}
_ID = re.compile(ID_PATTERN)
MAX_KUERZEL = 50


class BadReference(ValueError):
    """A type or id that names nothing the ops API knows (the API answers 400 with the text)."""


def parse_type(raw: str) -> OpsEntityType:
    text = unquote(str(raw or "")).strip()
    if text in _BY_ESPOCRM:
        return _BY_ESPOCRM[text]
    try:
        return OpsEntityType(text.lower())
    except ValueError:
        names = ", ".join([t.value for t in OpsEntityType] + sorted(_BY_ESPOCRM))
        raise BadReference(f"unknown entity type {text!r} (one of: {names})") from None


@dataclass(frozen=True)
class EntityRef:
    """One entity as operators name it: `{type}/{id}` (an EspoCRM id, or an employee's Kürzel)."""

    type: OpsEntityType
    id: str

    @property
    def espocrm_type(self) -> EntityType | None:
        return ESPOCRM_TYPES.get(self.type)

    @property
    def path(self) -> str:
        return f"/ops/entities/{self.type.value}/{self.id}"

    def as_json(self) -> dict[str, str | None]:
        espo = self.espocrm_type
        return {"type": self.type.value, "id": self.id, "espocrm_type": espo.value if espo else None, "path": self.path}

    def ledger_keys(self) -> list[tuple[SyncKind, str]]:
        """The ledger marks that sync this entity (kind, entity id)."""
        if self.type is OpsEntityType.DOCUMENT:
            return [(SyncKind.DOCUMENT, self.id)]
        if self.type is OpsEntityType.PARTY:
            return [(SyncKind.PARTY, self.id), (SyncKind.COLLECTION, f"{EntityType.BETEILIGTE.value}:{self.id}")]
        if self.type is OpsEntityType.BANK_ACCOUNT:
            return [(SyncKind.BANK_ACCOUNT, self.id)]
        if self.type is OpsEntityType.EMPLOYEE:
            return [(SyncKind.CALENDAR_EMPLOYEE, self.id), (SyncKind.CALENDAR_ALL, "all")]
        espo = self.espocrm_type
        assert espo is not None
        return [(SyncKind.COLLECTION, f"{espo.value}:{self.id}")]

    def activity_entities(self) -> list[str]:
        """The activity lists (services.platform.activity) of its runs: `{kind}:{entity id}`."""
        return [f"{kind.value}:{key}" for kind, key in self.ledger_keys() if key != "all"]


def parse_ref(raw_type: str, raw_id: str) -> EntityRef:
    """An EntityRef from path parameters (percent-decoded, checked); BadReference otherwise."""
    kind = parse_type(raw_type)
    text = unquote(str(raw_id or "")).strip()
    if kind is OpsEntityType.EMPLOYEE:
        if not text or len(text) > MAX_KUERZEL or any(c.isspace() or c == ":" or ord(c) < 32 for c in text):
            raise BadReference(f"not an employee Kürzel: {text[:60]!r} (1-{MAX_KUERZEL} characters, no spaces or ':')")
    elif not _ID.match(text):
        raise BadReference(f"not an EspoCRM id: {text[:60]!r} (letters, digits, '_' and '-', at most 64)")
    return EntityRef(kind, text)


def ref_for_espocrm(entity_type: str, entity_id: str) -> EntityRef | None:
    """The EntityRef of an EspoCRM record, or None for a type the ops API does not show."""
    kind = _BY_ESPOCRM.get(str(entity_type))
    return EntityRef(kind, str(entity_id)) if kind is not None else None


__all__ = ["ESPOCRM_TYPES", "BadReference", "EntityRef", "OpsEntityType", "parse_ref", "parse_type", "ref_for_espocrm"]
