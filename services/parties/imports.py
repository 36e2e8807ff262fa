"""Records that exist only in Advoware, created in EspoCRM (the cron's work: Advoware sends
no webhooks).

Rules:
- A party changed in Advoware that no EspoCRM record knows (neither by its `ExterneId` nor
  by `advowareId`) and that is not one Advoware kept after an EspoCRM delete
  (`beteiligte_sync_kept`) is created in EspoCRM with its `advowareId` and
  `syncStatus=pending_sync`; its sync then links and snapshots it.
- A party's bank accounts that no EspoCRM record links (by `advowareId` or the index) and
  whose IBAN none of the party's EspoCRM accounts has are created in EspoCRM under the
  party, already carrying their `advowareId`; the bank sync then links and snapshots them.
  This runs on the cron's party sync (Advoware changes to bank accounts don't touch the
  party's GeaendertAm, so the cron is where they are seen).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.clients.advoware import paths as P
from services.clients.errors import NotFoundError
from services.parties import mapping as M
from services.parties.deletes import BANK_LINK
from services.parties.plan import PARTY_FK, int_or_none
from services.parties.state import BANK_INDEX_SCOPE, KEPT_SCOPE, StateStore
from services.platform.logging import ServiceLogger
from services.platform.models import EntityType, SyncStatus


async def find_or_import_party(
    espocrm: Any, state: StateStore, party: Mapping[str, Any], *, import_new: bool, log: ServiceLogger
) -> tuple[str | None, bool]:
    """The EspoCRM id of an Advoware party (its `ExterneId`, else the record with its
    `advowareId`), or a new EspoCRM record; returns (id or None, imported)."""
    betnr = int(party[P.BeteiligterField.BETNR.value])
    espo_id = party.get(P.BeteiligterField.EXTERNE_ID.value)
    if espo_id:
        return str(espo_id), False
    found = await espocrm.list_entities(
        EntityType.BETEILIGTE.value,
        where=[{"type": "equals", "attribute": "advowareId", "value": betnr}],
        select="id",
        max_size=1,
    )
    rows = found.get("list", []) if isinstance(found, dict) else []
    if rows:
        return str(rows[0]["id"]), False
    if not import_new or await state.get(KEPT_SCOPE, str(betnr)):
        return None, False
    data = {
        **M.canonical_party_to_espo(M.advoware_party_to_canonical(party)),
        "advowareId": betnr,
        "syncStatus": SyncStatus.PENDING_SYNC.value,
    }
    created = await espocrm.create_entity(EntityType.BETEILIGTE.value, data, skip_duplicate_check=True)
    log.info(f"Imported Advoware party {betnr} into EspoCRM as {created['id']}", advoware_id=betnr, entity_id=created["id"])
    return str(created["id"]), True


async def import_advoware_banks(
    espocrm: Any, advoware: Any, state: StateStore, espo_id: str, betnr: int, *, log: ServiceLogger
) -> int:
    """Create the party's Advoware-only bank accounts in EspoCRM; returns how many."""
    try:
        accounts = await advoware.list_bank_accounts(betnr)
    except NotFoundError:
        return 0
    espo_banks = [b async for b in espocrm.iter_related(EntityType.BETEILIGTE.value, espo_id, BANK_LINK, select="id,iban,advowareId")]
    known_ids = {int_or_none(b.get("advowareId")) for b in espo_banks} - {None}
    known_ibans = {M.espo_bank_to_canonical(b)[M.BankField.IBAN.value] for b in espo_banks}
    imported = 0
    for bank in accounts:
        bank_id = int(bank[P.BankverbindungField.ID.value])
        canonical = M.advoware_bank_to_canonical(bank)
        if bank_id in known_ids or canonical[M.BankField.IBAN.value] in known_ibans:
            continue
        if await state.get(BANK_INDEX_SCOPE, str(bank_id)) is not None:
            continue  # linked to some EspoCRM record already
        data = {
            **M.canonical_bank_to_espo(canonical),
            PARTY_FK: espo_id,
            "advowareId": bank_id,
            "syncStatus": SyncStatus.PENDING_SYNC.value,
        }
        created = await espocrm.create_entity(EntityType.BANKVERBINDUNGEN.value, data, skip_duplicate_check=True)
        await state.set(BANK_INDEX_SCOPE, str(bank_id), created["id"])
        imported += 1
        log.info(f"Imported Advoware bank account {bank_id} of party {betnr} into EspoCRM as {created['id']}", entity_id=created["id"])
    return imported
