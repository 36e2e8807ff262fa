"""Deletes on either side, for parties and bank accounts (services.parties.executor calls
these when a record is gone; the planner's DELETED_IN_ADVOWARE step leads here too).

Rules:
- Deleted in EspoCRM → the Advoware party is deleted only when Advoware allows it: it
  refuses with 409 while matters reference it; then it is kept, logged and listed in state
  scope `beteiligte_sync_kept` (key = BetNr; a party listed there is not deleted again, and
  the cron does not import it back). The party is found through the snapshot, else by
  `ExterneId`; found nowhere → GONE. Its EspoCRM bank accounts (EspoCRM does not cascade) are
  re-queued: they have no party to follow any more and end up `failed`.
- Bank accounts deleted in EspoCRM are deleted in Advoware (a linked one, known from its
  snapshot; no snapshot → GONE).
- Deleted in Advoware → the EspoCRM record is deleted too (Advoware is the system of record
  for its own data); a party's EspoCRM bank accounts go with it.
Every path drops the snapshot (and a bank account's index entry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from services.clients.advoware import paths as P
from services.clients.errors import ConflictError, NotFoundError
from services.parties.events import TOPIC_BANK, sync_event
from services.parties.plan import BANK, PARTY, PARTY_FK, SyncOutcome, SyncResult, int_or_none
from services.parties.state import KEPT_SCOPE, Snapshots, StateStore, utc_iso
from services.platform.logging import ServiceLogger
from services.platform.models import EntityAction, EntityType, SyncSource

BANK_LINK = "bankverbindungen"
"""EspoCRM link CBeteiligte → CBankverbindungen."""


class Deletes:
    def __init__(
        self, espocrm: Any, advoware: Any, state: StateStore, logger: ServiceLogger, now: Callable[[], datetime]
    ) -> None:
        self.espocrm = espocrm
        self.advoware = advoware
        self.state = state
        self.logger = logger
        self.now = now
        self.parties = Snapshots(state, PARTY.snapshot_scope, indexed=False, now=now)
        self.banks = Snapshots(state, BANK.snapshot_scope, indexed=True, now=now)

    # ------------------------------------------------------------------ parties
    async def party_deleted_in_espocrm(self, espo_id: str) -> SyncResult:
        """The EspoCRM record is gone: delete the Advoware party unless matters still use it;
        re-queue the party's EspoCRM bank accounts."""
        result = await self._party_deleted_in_espocrm(espo_id)
        where = [{"type": "equals", "attribute": PARTY_FK, "value": espo_id}]
        async for bank in self.espocrm.iter_entities(EntityType.BANKVERBINDUNGEN.value, where=where, select="id"):
            result.follow_ups.append(
                sync_event(TOPIC_BANK, bank["id"], EntityAction.UPDATE, SyncSource.SYNC, f"party {espo_id} deleted")
            )
        return result

    async def _party_deleted_in_espocrm(self, espo_id: str) -> SyncResult:
        snap = await self.parties.load(espo_id)
        betnr = int_or_none(snap.get("advowareId")) if snap else None
        if betnr is None:
            party = await self.advoware.find_party_by_external_id(espo_id)
            betnr = int_or_none(party.get(P.BeteiligterField.BETNR.value)) if party else None
        if betnr is None:
            await self.parties.drop(espo_id)
            return SyncResult(SyncOutcome.GONE, espo_id, None, "in keinem System (mehr) vorhanden")
        kept = await self.state.get(KEPT_SCOPE, str(betnr))
        if kept:
            await self.parties.drop(espo_id)
            return SyncResult(SyncOutcome.KEPT_IN_ADVOWARE, espo_id, betnr, kept.get("reason"))
        try:
            await self.advoware.delete_party(betnr)
        except NotFoundError:
            await self.parties.drop(espo_id)
            return SyncResult(SyncOutcome.GONE, espo_id, betnr, "in Advoware bereits gelöscht")
        except ConflictError as exc:
            reason = exc.reason or str(exc)
            await self.state.set(KEPT_SCOPE, str(betnr), {"espoId": espo_id, "reason": reason, "at": utc_iso(self.now())})
            await self.parties.drop(espo_id)
            self.logger.warn(
                f"Party {espo_id} was deleted in EspoCRM but Advoware keeps {betnr}: {reason}",
                entity_id=espo_id,
                advoware_id=betnr,
            )
            return SyncResult(SyncOutcome.KEPT_IN_ADVOWARE, espo_id, betnr, reason)
        await self.parties.drop(espo_id)
        self.logger.info(f"Party {espo_id} deleted in EspoCRM: deleted {betnr} in Advoware", entity_id=espo_id, advoware_id=betnr)
        return SyncResult(SyncOutcome.DELETED_IN_ADVOWARE, espo_id, betnr)

    async def party_deleted_in_advoware(self, record: Mapping[str, Any], betnr: int) -> SyncResult:
        """The Advoware party is gone: delete the EspoCRM record and its bank accounts."""
        espo_id = record["id"]
        await self.parties.drop(espo_id)
        banks = [b async for b in self.espocrm.iter_related(EntityType.BETEILIGTE.value, espo_id, BANK_LINK, select="id")]
        for bank in banks:
            await self.banks.drop(bank["id"], await self.banks.load(bank["id"]))
            await self._delete_in_espocrm(EntityType.BANKVERBINDUNGEN, bank["id"])
        await self._delete_in_espocrm(EntityType.BETEILIGTE, espo_id)
        self.logger.info(
            f"Party {betnr} was deleted in Advoware: deleted {espo_id} (and {len(banks)} bank account(s)) in EspoCRM",
            entity_id=espo_id,
            advoware_id=betnr,
        )
        return SyncResult(SyncOutcome.DELETED_IN_ESPOCRM, espo_id, betnr)

    # ------------------------------------------------------------------ bank accounts
    async def bank_deleted_in_espocrm(self, espo_id: str) -> SyncResult:
        snap = await self.banks.load(espo_id)
        if not snap:
            return SyncResult(SyncOutcome.GONE, espo_id, None, "keine Verknüpfung bekannt")
        betnr, bank_id = int(snap["betnr"]), int(snap["advowareId"])
        try:
            await self.advoware.delete_bank_account(betnr, bank_id)
            outcome = SyncOutcome.DELETED_IN_ADVOWARE
        except NotFoundError:
            outcome = SyncOutcome.GONE
        await self.banks.drop(espo_id, snap)
        self.logger.info(f"Bank account {espo_id} deleted in EspoCRM: {outcome.value} ({bank_id})", entity_id=espo_id)
        return SyncResult(outcome, espo_id, bank_id)

    async def bank_deleted_in_advoware(self, record: Mapping[str, Any], snap: Mapping[str, Any] | None) -> SyncResult:
        espo_id = record["id"]
        await self.banks.drop(espo_id, snap)
        await self._delete_in_espocrm(EntityType.BANKVERBINDUNGEN, espo_id)
        self.logger.info(f"Bank account {record.get('advowareId')} deleted in Advoware: deleted {espo_id} in EspoCRM", entity_id=espo_id)
        return SyncResult(SyncOutcome.DELETED_IN_ESPOCRM, espo_id, int_or_none(record.get("advowareId")))

    async def _delete_in_espocrm(self, entity_type: EntityType, espo_id: str) -> None:
        try:
            await self.espocrm.delete_entity(entity_type.value, espo_id)
        except NotFoundError:
            pass
