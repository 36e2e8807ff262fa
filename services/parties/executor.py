"""What the party and bank-account sync does: read both sides, ask the planner
(services.parties.plan), apply the plan through the EspoCRM and Advoware clients. One code
path for both kinds; what differs in Advoware (paths, the party a bank account lives under)
is an `AdvowareSide` per kind.

Knows nothing of Motia: it takes an EspoCRM client, an Advoware client, a state store with
the `ctx.state` API and a logger; the step glue (src/glue/queue_handlers.py) holds the
entity lock, runs it on the sync ledger and enqueues the follow-up events it returns.

Rules of the run (the decisions are the planner's, the deletes services.parties.deletes'):
- A record created in Advoware has its snapshot saved at once: a retry after a crash
  between "created in Advoware" and "advowareId stored in EspoCRM" finds it (a party by its
  `ExterneId`, a bank account by IBAN) instead of creating a second.
- A party newly linked, or synced by the cron, queues its bank accounts; the cron's sync
  first imports the party's Advoware-only bank accounts (services.parties.imports).
- A linked record Advoware answers 404 for is read a second time (`recheck`: a party by its
  `ExterneId` and the first page of the party list, a bank account by a fresh list of its
  party's accounts and by IBAN). Found again under another id → linked to that one instead.
  A list that fails, or the record still listed → nothing deleted (`delete_held`, the
  record marked `failed` with the reason); else services.parties.deletes deletes under the
  deletion guard (services.platform.deletion_guard).
- Invalid data → `syncStatus=failed` with the reason, nothing written to Advoware.
  Advoware 4xx → `failed` with Advoware's message (no exception, the cron re-queues failed
  records); retryable errors (5xx, network, 429) → `failed` noted when possible, then
  raised: the sync ledger (services.platform.ledger, via
  src.glue.queue_handlers.handle_sync_event) retries with backoff and, when the budget is
  spent, dead-letters the mark and records `syncStatus=failed` with the last error.
  Permanent EspoCRM errors are raised (they cannot be recorded in EspoCRM anyway).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from services.clients.errors import ApiError, IntegrationError, NotFoundError, is_retryable
from services.parties import mapping as M
from services.parties.deletes import BANK_LINK, Deletes
from services.parties.events import TOPIC_BANK, sync_event
from services.parties.imports import import_advoware_banks
from services.parties.plan import (
    BANK,
    PARTY,
    PARTY_FK,
    Kind,
    ParentStep,
    Step,
    SyncOutcome,
    SyncResult,
    plan_bank_parent,
    plan_merge,
    plan_pair,
    status_changes,
)
from services.parties.state import Snapshots, StateStore
from services.platform.deletion_guard import DeletionGuard, LocalDeletionGuard
from services.platform.logging import ServiceLogger, get_service_logger
from services.platform.models import EntityAction, SyncSource, SyncStatus, espo_datetime

ADVOWARE_SERVICE = "advoware"
"""`ApiError.service` of errors raised by the Advoware client."""
WAITING_NOTE = "wartet auf die Synchronisierung des Beteiligten"


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        reason = exc.reason or str(exc)
        return f"{exc.service} {exc.status}: {reason}"
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- the Advoware side per kind


@dataclass(frozen=True)
class Recheck:
    """The second, independent read after a linked record answered 404 by its id."""

    found: dict[str, Any] | None = None
    """The record found again by the search (under another id): linked instead of deleted."""
    doubt: str | None = None
    """Why the record may still exist (a list failed, it is still listed): nothing is deleted."""
    listed_empty: bool = False
    """The list answered without a single record (the deletes weigh it against what we know)."""


class AdvowareSide(Protocol):
    """One kind's Advoware calls."""

    async def get(self, advoware_id: int) -> dict[str, Any] | None: ...

    async def find(self, espo_id: str, espo: M.Canonical) -> dict[str, Any] | None: ...

    async def parent_exists(self) -> bool: ...

    async def create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def update(self, advoware_id: int, body: dict[str, Any]) -> None: ...

    async def recheck(self, espo_id: str, espo: M.Canonical, advoware_id: int) -> Recheck: ...


class PartySide:
    """Beteiligte: by BetNr; an unlinked record is found by its `ExterneId`."""

    def __init__(self, advoware: Any) -> None:
        self.advoware = advoware

    async def get(self, advoware_id: int) -> dict[str, Any] | None:
        try:
            party: dict[str, Any] = await self.advoware.get_party(advoware_id)
        except NotFoundError:
            return None
        return party

    async def find(self, espo_id: str, espo: M.Canonical) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.advoware.find_party_by_external_id(espo_id)
        return found

    async def parent_exists(self) -> bool:
        return True

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self.advoware.create_party(body)
        return created

    async def update(self, advoware_id: int, body: dict[str, Any]) -> None:
        await self.advoware.update_party(advoware_id, body, merge=False)

    async def recheck(self, espo_id: str, espo: M.Canonical, advoware_id: int) -> Recheck:
        """The party list searched by `ExterneId`, and its first page (does it list anything?)."""
        try:
            found = await self.find(espo_id, espo)
            first: list[dict[str, Any]] = []
            async for page in self.advoware.list_parties(page_size=1):
                first = page
                break
        except NotFoundError as exc:
            return Recheck(doubt=f"Advoware's party list answers 404 ({exc}): a wrong path or a missing permission")
        if found is not None and PARTY.advoware_id(found) == advoware_id:
            return Recheck(doubt=f"Advoware answered 404 for party {advoware_id} but its list holds it")
        return Recheck(found=found, listed_empty=not first)


class BankSide:
    """Bankverbindungen of party `betnr` (listed once per run); an unlinked record is found
    by IBAN among the accounts no other EspoCRM record links."""

    def __init__(self, advoware: Any, betnr: int, snapshots: Snapshots) -> None:
        self.advoware = advoware
        self.betnr = betnr
        self.snapshots = snapshots
        self._accounts: list[dict[str, Any]] | None = None
        self._listed = False

    async def accounts(self) -> list[dict[str, Any]] | None:
        if not self._listed:
            try:
                self._accounts = await self.advoware.list_bank_accounts(self.betnr)
            except NotFoundError:
                self._accounts = None
            self._listed = True
        return self._accounts

    async def get(self, advoware_id: int) -> dict[str, Any] | None:
        return next((b for b in await self.accounts() or [] if BANK.advoware_id(b) == advoware_id), None)

    async def find(self, espo_id: str, espo: M.Canonical) -> dict[str, Any] | None:
        iban = M.BankField.IBAN.value
        for bank in await self.accounts() or []:
            if M.advoware_bank_to_canonical(bank)[iban] != espo[iban]:
                continue
            if await self.snapshots.owner(int(bank[BANK.advoware_id_field])) in (None, espo_id):
                return bank
        return None

    async def parent_exists(self) -> bool:
        return await self.accounts() is not None

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self.advoware.create_bank_account(self.betnr, body)
        return created

    async def update(self, advoware_id: int, body: dict[str, Any]) -> None:
        await self.advoware.update_bank_account(self.betnr, advoware_id, body, merge=False)

    async def recheck(self, espo_id: str, espo: M.Canonical, advoware_id: int) -> Recheck:
        """A fresh list of the party's accounts: the id must be missing from a list that
        answered; an account with the same IBAN no other record links is linked instead."""
        try:
            accounts: list[dict[str, Any]] = await self.advoware.list_bank_accounts(self.betnr)
        except NotFoundError as exc:
            return Recheck(doubt=f"the bank accounts of Advoware party {self.betnr} answer 404 ({exc}): the party's own sync decides")
        self._accounts, self._listed = accounts, True
        if any(BANK.advoware_id(b) == advoware_id for b in accounts):
            return Recheck(doubt=f"Advoware bank account {advoware_id} is listed again")
        return Recheck(found=await self.find(espo_id, espo))


# --------------------------------------------------------------------------- the sync


class BeteiligteSync:
    """Sync one party or bank account at a time (the caller holds the entity lock)."""

    def __init__(
        self,
        espocrm: Any,
        advoware: Any,
        state: StateStore,
        *,
        context: Any = None,
        logger: ServiceLogger | None = None,
        now: Callable[[], datetime] | None = None,
        guard: DeletionGuard | None = None,
    ) -> None:
        """`guard`: the deletion guard (the worker passes the shared one on Redis; default: one
        of this process only, for tests and tools)."""
        self.espocrm = espocrm
        self.advoware = advoware
        self.state = state
        self.logger = logger or get_service_logger("beteiligte_sync", context)
        self.now = now or (lambda: datetime.now(UTC))
        self.deletes = Deletes(espocrm, advoware, state, self.logger, self.now, guard or LocalDeletionGuard())

    def _snapshots(self, kind: Kind) -> Snapshots:
        return self.deletes.parties if kind is PARTY else self.deletes.banks

    # ------------------------------------------------------------------ entry points
    async def sync_party(self, espo_id: str, *, source: SyncSource = SyncSource.WEBHOOK) -> SyncResult:
        """Bring one party in line on both sides (create, update, conflict or delete)."""
        try:
            record = await self.espocrm.get_entity(PARTY.entity_type.value, espo_id)
        except NotFoundError:
            return await self.deletes.party_deleted_in_espocrm(espo_id)
        return await self._guarded(PARTY, record, lambda: self._sync_party(record, source))

    async def sync_bank(self, espo_id: str, *, source: SyncSource = SyncSource.WEBHOOK) -> SyncResult:
        """Bring one bank account in line on both sides (follows its party)."""
        try:
            record = await self.espocrm.get_entity(BANK.entity_type.value, espo_id)
        except NotFoundError:
            return await self.deletes.bank_deleted_in_espocrm(espo_id)
        return await self._guarded(BANK, record, lambda: self._sync_bank(record))

    # ------------------------------------------------------------------ per kind
    async def _sync_party(self, record: dict[str, Any], source: SyncSource) -> SyncResult:
        snap = await self._snapshots(PARTY).load(record["id"])
        result, newly_linked = await self._sync_pair(PARTY, record, record, snap, PartySide(self.advoware))
        if result.outcome in (SyncOutcome.DELETED_IN_ESPOCRM, SyncOutcome.FAILED, SyncOutcome.DELETE_HELD):
            return result
        espo_id, betnr = record["id"], result.advoware_id
        assert betnr is not None
        if newly_linked or source is SyncSource.CRON:
            if source is SyncSource.CRON:
                await import_advoware_banks(self.espocrm, self.advoware, self.state, espo_id, betnr, log=self.logger)
            result.follow_ups = [
                sync_event(TOPIC_BANK, bank["id"], EntityAction.UPDATE, SyncSource.SYNC, f"party {espo_id} synced ({source.value})")
                async for bank in self.espocrm.iter_related(PARTY.entity_type.value, espo_id, BANK_LINK, select="id")
            ]
        return result

    async def _sync_bank(self, record: dict[str, Any]) -> SyncResult:
        espo_id = record["id"]
        snapshots = self._snapshots(BANK)
        party: dict[str, Any] | None = None
        if record.get(PARTY_FK):
            try:
                party = await self.espocrm.get_entity(PARTY.entity_type.value, record[PARTY_FK])
            except NotFoundError:
                party = None
        snap = await snapshots.load(espo_id)
        parent = plan_bank_parent(record, party, snap)
        if parent.step is ParentStep.FAIL:
            return await self._fail(BANK, record, parent.reason or "")
        if parent.step is ParentStep.DROP_AND_FAIL:
            await snapshots.drop(espo_id, snap)
            return await self._fail(BANK, record, parent.reason or "")
        if parent.step is ParentStep.WAIT:
            await self._mark(BANK, record, SyncStatus.PENDING_SYNC, WAITING_NOTE)
            return SyncResult(SyncOutcome.WAITING, espo_id, None, parent.reason)
        betnr = parent.betnr
        assert betnr is not None
        espo = record
        if parent.step is ParentStep.MOVED and snap is not None:
            # The account moved to another party: remove it from the old one, create anew.
            try:
                await self.advoware.delete_bank_account(int(snap["betnr"]), int(record["advowareId"]))
            except NotFoundError:
                pass
            await snapshots.drop(espo_id, snap)
            snap, espo = None, {**record, "advowareId": None}
        result, _ = await self._sync_pair(BANK, record, espo, snap, BankSide(self.advoware, betnr, snapshots), parent=betnr)
        return result

    # ------------------------------------------------------------------ one code path
    async def _sync_pair(
        self,
        kind: Kind,
        record: dict[str, Any],
        espo: Mapping[str, Any],
        snap: Mapping[str, Any] | None,
        side: AdvowareSide,
        *,
        parent: int | None = None,
    ) -> tuple[SyncResult, bool]:
        """Plan and apply one pair; returns the result and whether `advowareId` was newly
        stored. `espo` is the record as the planner sees it (a moved bank account: unlinked)."""
        espo_id = record["id"]
        snapshots = self._snapshots(kind)
        plan = plan_pair(kind, espo, snap, parent=parent)
        advo: dict[str, Any] | None = None
        if plan.step is Step.LOOK_UP:
            if plan.advoware_id is None:
                advo = await side.find(espo_id, kind.espo_to_canonical(espo))
                plan = plan_pair(kind, espo, snap, advoware=advo, parent=parent, parent_exists=await side.parent_exists())
            else:
                advo = await side.get(plan.advoware_id)
                plan = plan_pair(kind, espo, snap, advoware=advo, parent=parent)
        if plan.step is Step.FAIL:
            return await self._fail(kind, record, plan.reason or ""), False
        if plan.step is Step.DELETED_IN_ADVOWARE:
            assert plan.advoware_id is not None
            check = await side.recheck(espo_id, kind.espo_to_canonical(espo), plan.advoware_id)
            if check.found is None:
                return await self._deleted_in_advoware(kind, record, snap, plan.advoware_id, check), False
            advo, espo = check.found, {**espo, "advowareId": None}
            self.logger.warn(
                f"{kind.label} {espo_id}: {plan.advoware_id} not found in Advoware, but {kind.advoware_id(advo)} is: linking it",
                entity_id=espo_id,
            )
            plan = plan_pair(kind, espo, snap, advoware=advo, parent=parent)

        first: SyncOutcome | None = None
        if plan.step is Step.CREATE:
            assert plan.base is not None
            body = kind.canonical_to_advoware(plan.base)
            if kind.back_reference is not None:
                body[kind.back_reference] = espo_id
            advo = await side.create(body)
            created_id = kind.advoware_id(advo)
            assert created_id is not None
            first = SyncOutcome.CREATED
            # Saved at once: a crash before advowareId reaches EspoCRM still finds it.
            await snapshots.save(espo_id, created_id, plan.base, parent=parent)
            self.logger.info(f"{kind.label} {espo_id} created in Advoware as {created_id}", entity_id=espo_id, advoware_id=created_id)
        elif plan.step is Step.LINK:
            first = SyncOutcome.LINKED
            self.logger.info(f"{kind.label} {espo_id} already exists in Advoware as {plan.advoware_id}: linking", entity_id=espo_id)
        assert advo is not None

        mp = plan_merge(kind, record, advo, plan.base, owner_elsewhere=await self._owner_elsewhere(kind, advo, espo_id), first=first)
        if mp.outcome is SyncOutcome.FAILED:
            return await self._fail(kind, record, mp.reason or "", mp.advoware_id), False
        assert mp.merge is not None
        if mp.advoware_body is not None:
            await side.update(mp.advoware_id, mp.advoware_body)
        if mp.writes:
            changes = {**mp.espo_changes, "advowareLastSync": espo_datetime(self.now())}
            await self.espocrm.update_entity(kind.entity_type.value, espo_id, changes)
        if mp.conflicts:
            self.logger.warn(
                f"Conflict on {kind.label.lower()} {espo_id}: {mp.note}", entity_id=espo_id, advoware_id=mp.advoware_id, fields=mp.conflicts
            )
        await snapshots.save(espo_id, mp.advoware_id, mp.merge.merged, parent=parent)
        self.logger.info(
            f"{kind.label} {espo_id} ↔ {mp.advoware_id}: {mp.outcome.value}",
            entity_id=espo_id,
            advoware_id=mp.advoware_id,
            to_advoware=sorted(mp.merge.to_advoware),
            to_espocrm=sorted(mp.merge.to_espocrm),
        )
        return SyncResult(mp.outcome, espo_id, mp.advoware_id, mp.note, conflicts=mp.conflicts), mp.newly_linked

    async def _deleted_in_advoware(
        self, kind: Kind, record: Mapping[str, Any], snap: Mapping[str, Any] | None, advoware_id: int, check: Recheck
    ) -> SyncResult:
        """The linked Advoware record is gone by both reads: the guarded delete in EspoCRM, or,
        when it may not happen, the record marked `failed` with the reason."""
        if check.doubt is not None:
            result = self.deletes.held(record["id"], advoware_id, check.doubt)
        elif kind is PARTY:
            result = await self.deletes.party_deleted_in_advoware(record, advoware_id, listed_empty=check.listed_empty)
        else:
            result = await self.deletes.bank_deleted_in_advoware(record, snap)
        if result.outcome is SyncOutcome.DELETE_HELD:
            await self._mark(kind, record, SyncStatus.FAILED, f"nicht gelöscht: {result.message}")
        return result

    async def _owner_elsewhere(self, kind: Kind, advo: Mapping[str, Any], espo_id: str) -> str | None:
        """The existing EspoCRM record other than `espo_id` the back-reference names."""
        other = advo.get(kind.back_reference) if kind.back_reference else None
        if not other or other == espo_id:
            return None
        try:
            await self.espocrm.get_entity(kind.entity_type.value, other)
        except NotFoundError:
            return None
        return str(other)

    # ------------------------------------------------------------------ status and errors
    async def _mark(self, kind: Kind, record: Mapping[str, Any], status: SyncStatus, error: str | None, *, best_effort: bool = False) -> None:
        """Write syncStatus/syncError when they differ (never writes the same value twice)."""
        changes = status_changes(record, status, error)
        if not changes:
            return
        try:
            await self.espocrm.update_entity(kind.entity_type.value, record["id"], changes)
        except IntegrationError as exc:
            if not best_effort:
                raise
            self.logger.warn(
                f"Could not record syncStatus={status.value} on {kind.entity_type.value} {record['id']}: {exc}", entity_id=record["id"]
            )

    async def _fail(self, kind: Kind, record: Mapping[str, Any], reason: str, advoware_id: int | None = None) -> SyncResult:
        self.logger.warn(f"{kind.entity_type.value} {record['id']} not synced: {reason}", entity_id=record["id"], reason=reason)
        await self._mark(kind, record, SyncStatus.FAILED, reason)
        return SyncResult(SyncOutcome.FAILED, record["id"], advoware_id, reason)

    async def _guarded(self, kind: Kind, record: Mapping[str, Any], work: Callable[[], Awaitable[SyncResult]]) -> SyncResult:
        """Run `work`. Retryable errors: noted as failed (best effort), then raised for the ledger's retry.
        Permanent Advoware errors and invalid data: recorded as failed, no exception.
        Permanent EspoCRM errors: raised (they cannot be recorded in EspoCRM anyway)."""
        try:
            return await work()
        except IntegrationError as exc:
            reason = describe_error(exc)
            if is_retryable(exc):
                self.logger.warn(
                    f"{kind.entity_type.value} {record['id']}: retryable error, the queue will retry: {reason}", entity_id=record["id"]
                )
                await self._mark(kind, record, SyncStatus.FAILED, f"vorübergehend: {reason}", best_effort=True)
                raise
            if isinstance(exc, ApiError) and exc.service != ADVOWARE_SERVICE:
                raise
            return await self._fail(kind, record, reason)

