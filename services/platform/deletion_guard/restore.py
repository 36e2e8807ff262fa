"""Re-create a deleted record from its tombstone (the last state the guard kept).

What a restore does, per system of the deleted record:
- EspoCRM (`CBeteiligte` with its `CBankverbindungen`, or one `CBankverbindungen`): created
  anew with the kept attributes (EspoCRM assigns new ids; read-only attributes dropped),
  `syncStatus=pending_sync`, the bank accounts under the new party. `advowareId` is kept, so
  the next sync links the record to its Advoware record again (re-pointing `ExterneId`);
  `unlink=True` drops it, and the sync creates the Advoware record anew.
- Advoware (`Beteiligte` with its `Bankverbindung` records, one `Bankverbindung` of the
  party `context.betnr`, or a `Termin`): created anew (Advoware assigns the BetNr / Id / FrNr;
  read-only fields dropped by the client). A party keeps its `ExterneId`, so the EspoCRM
  record it names links to the new BetNr on its next sync.
- Google (`event` of `context.calendar_id`): inserted anew without its server fields; its
  `advowareFrNr` makes the calendar sync adopt it.
Returns what was created: `{"system", "entity_type", "id", "related": [ids]}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.clients.advoware import paths as P
from services.clients.errors import ValidationError
from services.platform.deletion_guard.model import System, Tombstoned
from services.platform.models import EntityType

ESPOCRM_READ_ONLY = frozenset(
    {"id", "deleted", "createdAt", "modifiedAt", "createdById", "createdByName", "modifiedById", "modifiedByName", "versionNumber"}
)
GOOGLE_SERVER_FIELDS = frozenset(
    {"id", "etag", "htmlLink", "iCalUID", "created", "updated", "creator", "organizer", "sequence", "status", "kind", "eventType"}
)
PARTY_FK = "beteiligteId"
"""CBankverbindungen → its CBeteiligte: restored bank accounts go under the restored party."""


def _espocrm_body(record: Mapping[str, Any], *, unlink: bool, **extra: Any) -> dict[str, Any]:
    body = {k: v for k, v in record.items() if k not in ESPOCRM_READ_ONLY}
    body.update({"syncStatus": "pending_sync", "syncError": None, **extra})
    if unlink:
        body.pop("advowareId", None)
    return body


async def _restore_espocrm(espocrm: Any, tomb: Mapping[str, Any], unlink: bool) -> dict[str, Any]:
    record = tomb.get("record") or {}
    created = await espocrm.create_entity(tomb["entity_type"], _espocrm_body(record, unlink=unlink), skip_duplicate_check=True)
    related: list[str] = []
    for item in tomb.get("related") or []:
        extra = {PARTY_FK: created["id"]} if tomb["entity_type"] == EntityType.BETEILIGTE.value else {}
        body = _espocrm_body(item.get("record") or {}, unlink=unlink, **extra)
        related.append(str((await espocrm.create_entity(item["entity_type"], body, skip_duplicate_check=True))["id"]))
    return {"id": str(created["id"]), "related": related}


async def _restore_advoware(advoware: Any, tomb: Mapping[str, Any]) -> dict[str, Any]:
    record = tomb.get("record") or {}
    context = tomb.get("context") or {}
    entity_type = Tombstoned(tomb["entity_type"])
    bank_id = P.BankverbindungField.ID.value
    if entity_type is Tombstoned.ADVOWARE_APPOINTMENT:
        created = await advoware.create_appointment(record)
        return {"id": str(created.get(P.TerminField.FRNR.value)), "related": []}
    if entity_type is Tombstoned.ADVOWARE_BANK:
        created = await advoware.create_bank_account(int(context["betnr"]), record)
        return {"id": str(created.get(bank_id)), "related": []}
    party = await advoware.create_party(record)
    betnr = int(party[P.BeteiligterField.BETNR.value])
    related = [str((await advoware.create_bank_account(betnr, item.get("record") or {})).get(bank_id)) for item in tomb.get("related") or []]
    return {"id": str(betnr), "related": related}


async def _restore_google(google: Any, tomb: Mapping[str, Any]) -> dict[str, Any]:
    calendar_id = (tomb.get("context") or {}).get("calendar_id")
    if not calendar_id:
        raise ValidationError(f"tombstone {tomb.get('id')}: no calendar_id to restore the event into")
    body = {k: v for k, v in (tomb.get("record") or {}).items() if k not in GOOGLE_SERVER_FIELDS}
    created = await google.insert_event(calendar_id, body)
    return {"id": str(created["id"]), "related": []}


async def restore(
    tombstone: Mapping[str, Any], *, espocrm: Any = None, advoware: Any = None, google: Any = None, unlink: bool = False
) -> dict[str, Any]:
    """Re-create the tombstone's record (and its related records) with the client of its system."""
    system = System(tombstone["system"])
    if not tombstone.get("record"):
        raise ValidationError(f"tombstone {tombstone.get('id')}: no record kept")
    if system is System.ESPOCRM:
        out = await _restore_espocrm(espocrm, tombstone, unlink)
    elif system is System.ADVOWARE:
        out = await _restore_advoware(advoware, tombstone)
    else:
        out = await _restore_google(google, tombstone)
    return {"system": system.value, "entity_type": tombstone["entity_type"], **out}
