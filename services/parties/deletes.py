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
- Every one of these deletes is guarded (services.platform.deletion_guard): the executor has
  confirmed an Advoware 404 by a second read (`Recheck`), EspoCRM's 404 is confirmed here by
  its list (`espocrm_doubt`); a party list that is empty although more linked parties are
  known than the hourly budget deletes nothing; the guard's hourly budget admits the delete,
  and the record's last state (with the bank accounts deleted along) is kept as a tombstone
  first. A delete that may not happen is DELETE_HELD: nothing deleted, the snapshot kept (the
  cron comes back to it), a warning logged; the executor marks a record that still exists
  `failed` with the reason.
Every delete that happens drops the snapshot (and a bank account's index entry). A record the
sync deleted in EspoCRM is noted (`beteiligte_sync_deleted`): its delete webhook is our echo
and never deletes the Advoware record, which may be back by then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.clients.advoware import paths as P
from services.clients.errors import ConflictError, NotFoundError
from services.parties.events import TOPIC_BANK, TOPIC_PARTY, sync_event
from services.parties.plan import BANK, PARTY, PARTY_FK, SyncOutcome, SyncResult, int_or_none
from services.parties.state import DELETED_BY_SYNC_SCOPE, KEPT_SCOPE, Snapshots, StateStore, utc_iso
from services.platform.deletion_guard import DeleteHeld, Deletion, DeletionGuard, System, Tombstoned, espocrm_doubt, gated_delete
from services.platform.logging import ServiceLogger
from services.platform.models import EntityAction, EntityType, SyncSource

BANK_LINK = "bankverbindungen"
"""EspoCRM link CBeteiligte → CBankverbindungen."""
ADVOWARE_PARTY = Tombstoned.ADVOWARE_PARTY.value
ADVOWARE_BANK = Tombstoned.ADVOWARE_BANK.value
CONFIRMED = "delete confirmed by an operator"


@dataclass
class Deletes:
    """The delete paths of one `BeteiligteSync` (its clients, state, logger and clock)."""

    espocrm: Any
    advoware: Any
    state: StateStore
    logger: ServiceLogger
    now: Callable[[], datetime]
    guard: DeletionGuard
    parties: Snapshots = field(init=False)
    banks: Snapshots = field(init=False)

    def __post_init__(self) -> None:
        self.parties = Snapshots(self.state, PARTY.snapshot_scope, indexed=False, now=self.now)
        self.banks = Snapshots(self.state, BANK.snapshot_scope, indexed=True, now=self.now)

    def held(self, espo_id: str, advoware_id: int | None, reason: str) -> SyncResult:
        """A delete that did not happen (see the module docstring), warned about."""
        self.logger.warn(f"Not deleted ({espo_id} ↔ {advoware_id}): {reason}", entity_id=espo_id, advoware_id=advoware_id)
        return SyncResult(SyncOutcome.DELETE_HELD, espo_id, advoware_id, reason)

    async def parties_expected(self) -> bool:
        """More linked parties known than the guard lets go within an hour: an empty list of
        the other side cannot be true."""
        return len(await self.state.list(PARTY.snapshot_scope)) > self.guard.max_per_hour

    # ------------------------------------------------------------------ parties
    async def party_deleted_in_espocrm(self, espo_id: str) -> SyncResult:
        """The EspoCRM record is gone: delete the Advoware party unless matters still use it;
        re-queue the party's EspoCRM bank accounts."""
        result = await self._party_deleted_in_espocrm(espo_id)
        if result.outcome is SyncOutcome.DELETE_HELD:
            return result
        where = [{"type": "equals", "attribute": PARTY_FK, "value": espo_id}]
        async for bank in self.espocrm.iter_entities(EntityType.BANKVERBINDUNGEN.value, where=where, select="id"):
            result.follow_ups.append(
                sync_event(TOPIC_BANK, bank["id"], EntityAction.UPDATE, SyncSource.SYNC, f"party {espo_id} deleted")
            )
        return result

    async def our_echo(self, espo_id: str) -> SyncResult | None:
        """GONE when the sync itself deleted `espo_id` in EspoCRM (the note is dropped)."""
        note = await self.state.get(DELETED_BY_SYNC_SCOPE, espo_id)
        if not note:
            return None
        await self.state.delete(DELETED_BY_SYNC_SCOPE, espo_id)
        return SyncResult(SyncOutcome.GONE, espo_id, int_or_none(note.get("advowareId")), "von der Synchronisierung gelöscht")

    async def _deleted_by_sync(self, entity_type: EntityType, espo_id: str, advoware_id: int | None) -> None:
        await self.state.set(DELETED_BY_SYNC_SCOPE, espo_id, {"advowareId": advoware_id, "at": utc_iso(self.now())})
        await self._delete_in_espocrm(entity_type, espo_id)

    async def _party_deleted_in_espocrm(self, espo_id: str) -> SyncResult:
        echo = await self.our_echo(espo_id)
        if echo is not None:
            return echo
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
        doubt = await espocrm_doubt(self.espocrm, PARTY.entity_type.value, espo_id, expected=self.parties_expected)
        if doubt:
            return self.held(espo_id, betnr, doubt)
        try:
            party = await self.advoware.get_party(betnr)
            deletion = Deletion(
                System.ADVOWARE, ADVOWARE_PARTY, str(betnr),
                f"{PARTY.entity_type.value} {espo_id} not found in EspoCRM (404, not in its list)",
                record=party, related=await self._advoware_banks(betnr), context={"espoId": espo_id},
                retry=sync_event(TOPIC_PARTY, espo_id, EntityAction.DELETE, SyncSource.MANUAL, CONFIRMED),
            )
            await gated_delete(self.guard, deletion, lambda: self.advoware.delete_party(betnr))
        except DeleteHeld as exc:
            return self.held(espo_id, betnr, str(exc))
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

    async def _advoware_banks(self, betnr: int) -> list[dict[str, Any]]:
        """The party's Advoware bank accounts as tombstone entries (Advoware deletes them along)."""
        try:
            accounts = await self.advoware.list_bank_accounts(betnr)
        except NotFoundError:
            return []
        return [{"entity_type": ADVOWARE_BANK, "record": a} for a in accounts]

    async def party_deleted_in_advoware(self, record: Mapping[str, Any], betnr: int, *, listed_empty: bool = False) -> SyncResult:
        """The Advoware party is gone (confirmed by the executor's second read): delete the
        EspoCRM record and its bank accounts. `listed_empty`: Advoware's party list was empty."""
        espo_id = record["id"]
        if listed_empty and await self.parties_expected():
            return self.held(espo_id, betnr, "Advoware lists no party at all although more linked parties are known")
        banks = [b async for b in self.espocrm.iter_related(EntityType.BETEILIGTE.value, espo_id, BANK_LINK)]

        async def delete() -> None:
            await self.parties.drop(espo_id)
            for bank in banks:
                await self.banks.drop(bank["id"], await self.banks.load(bank["id"]))
                await self._deleted_by_sync(EntityType.BANKVERBINDUNGEN, bank["id"], int_or_none(bank.get("advowareId")))
            await self._deleted_by_sync(EntityType.BETEILIGTE, espo_id, betnr)

        deletion = Deletion(
            System.ESPOCRM, EntityType.BETEILIGTE.value, espo_id,
            f"Advoware party {betnr} not found (404 by BetNr, no party with ExterneId {espo_id})",
            record=dict(record), related=[{"entity_type": EntityType.BANKVERBINDUNGEN.value, "record": b} for b in banks],
            context={"advowareId": betnr},
            retry=sync_event(TOPIC_PARTY, espo_id, EntityAction.UPDATE, SyncSource.MANUAL, CONFIRMED),
        )
        try:
            await gated_delete(self.guard, deletion, delete)
        except DeleteHeld as exc:
            return self.held(espo_id, betnr, str(exc))
        self.logger.info(
            f"Party {betnr} was deleted in Advoware: deleted {espo_id} (and {len(banks)} bank account(s)) in EspoCRM",
            entity_id=espo_id,
            advoware_id=betnr,
        )
        return SyncResult(SyncOutcome.DELETED_IN_ESPOCRM, espo_id, betnr)

    # ------------------------------------------------------------------ bank accounts
    async def bank_deleted_in_espocrm(self, espo_id: str) -> SyncResult:
        echo = await self.our_echo(espo_id)
        if echo is not None:
            return echo
        snap = await self.banks.load(espo_id)
        if not snap:
            return SyncResult(SyncOutcome.GONE, espo_id, None, "keine Verknüpfung bekannt")
        betnr, bank_id = int(snap["betnr"]), int(snap["advowareId"])
        doubt = await espocrm_doubt(self.espocrm, BANK.entity_type.value, espo_id)
        if doubt:
            return self.held(espo_id, bank_id, doubt)
        try:
            accounts = await self.advoware.list_bank_accounts(betnr)
        except NotFoundError as exc:
            return self.held(espo_id, bank_id, f"the bank accounts of Advoware party {betnr} answer 404 ({exc})")
        account = next((a for a in accounts if BANK.advoware_id(a) == bank_id), None)
        outcome = SyncOutcome.GONE
        if account is not None:
            deletion = Deletion(
                System.ADVOWARE, ADVOWARE_BANK, str(bank_id),
                f"{BANK.entity_type.value} {espo_id} not found in EspoCRM (404, not in its list)",
                record=account, context={"betnr": betnr, "espoId": espo_id},
                retry=sync_event(TOPIC_BANK, espo_id, EntityAction.DELETE, SyncSource.MANUAL, CONFIRMED),
            )
            try:
                await gated_delete(self.guard, deletion, lambda: self.advoware.delete_bank_account(betnr, bank_id))
                outcome = SyncOutcome.DELETED_IN_ADVOWARE
            except DeleteHeld as exc:
                return self.held(espo_id, bank_id, str(exc))
            except NotFoundError:
                pass
        await self.banks.drop(espo_id, snap)
        self.logger.info(f"Bank account {espo_id} deleted in EspoCRM: {outcome.value} ({bank_id})", entity_id=espo_id)
        return SyncResult(outcome, espo_id, bank_id)

    async def bank_deleted_in_advoware(self, record: Mapping[str, Any], snap: Mapping[str, Any] | None) -> SyncResult:
        """The Advoware account is gone (confirmed by the executor's second read)."""
        espo_id = record["id"]
        bank_id = int_or_none(record.get("advowareId"))

        async def delete() -> None:
            await self.banks.drop(espo_id, snap)
            await self._deleted_by_sync(EntityType.BANKVERBINDUNGEN, espo_id, bank_id)

        deletion = Deletion(
            System.ESPOCRM, EntityType.BANKVERBINDUNGEN.value, espo_id,
            f"Advoware bank account {bank_id} not found (not listed twice, no account with its IBAN)",
            record=dict(record), context={"advowareId": bank_id},
            retry=sync_event(TOPIC_BANK, espo_id, EntityAction.UPDATE, SyncSource.MANUAL, CONFIRMED),
        )
        try:
            await gated_delete(self.guard, deletion, delete)
        except DeleteHeld as exc:
            return self.held(espo_id, bank_id, str(exc))
        self.logger.info(f"Bank account {bank_id} deleted in Advoware: deleted {espo_id} in EspoCRM", entity_id=espo_id)
        return SyncResult(SyncOutcome.DELETED_IN_ESPOCRM, espo_id, bank_id)

    async def _delete_in_espocrm(self, entity_type: EntityType, espo_id: str) -> None:
        try:
            await self.espocrm.delete_entity(entity_type.value, espo_id)
        except NotFoundError:
            pass
