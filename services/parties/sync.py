"""Two-way sync of parties (CBeteiligte ↔ Advoware Beteiligte) and their bank accounts
(CBankverbindungen ↔ Bankverbindungen). Knows nothing of Motia: it takes an EspoCRM client,
an Advoware client, a state store with the `ctx.state` API (`get/set/delete/list(scope, key)`)
and a logger; the step glue (src/glue/queue_handlers.py) holds the entity lock, runs it on
the sync ledger and enqueues the follow-up events it returns.

EspoCRM is the hub and keeps the references (`advowareId` on both entities); Advoware keeps
the EspoCRM id of a party in `ExterneId`, so a retry after a crash between "created in
Advoware" and "advowareId stored in EspoCRM" finds the party instead of creating a second.

Per entity the last synced state (the merged canonical record, see
`services.parties.mapping`) is kept as a *snapshot* in state; every sync reads both
sides and runs the three-way merge against it. When both sides equal the snapshot
nothing is written - that is what stops our own writes (which come back as EspoCRM
webhooks, and as Advoware changes seen by the cron) from ping-ponging.

Rules (also in src/steps/vmh/README.md):
- Created in EspoCRM → created in Advoware (after validation) → `advowareId` stored;
  bank accounts follow once their party has an `advowareId`.
- Updated on one side → copied to the other; on both sides → conflict rule of
  `services.parties.mapping.conflict_winner`, recorded as `syncStatus=conflict` with a note in
  `syncError` and logged. The note stays until the next real change is synced.
- Deleted in EspoCRM → the party is deleted in Advoware only when Advoware allows it (it
  refuses with 409 while matters reference it); then it is kept, logged and listed in state
  scope `beteiligte_sync_kept` (key = BetNr). Bank accounts deleted in EspoCRM are deleted
  in Advoware.
- Deleted in Advoware → the EspoCRM record is deleted too (Advoware is the system of record
  for its own data); a party's EspoCRM bank accounts go with it.
- Invalid data (missing name, bad e-mail/date, bad IBAN checksum/BIC) → `syncStatus=failed`
  with the reason, nothing written to Advoware. Advoware 4xx → `failed` with Advoware's
  message (no exception, the cron re-queues failed records); retryable errors (5xx,
  network, 429) → `failed` noted when possible, then raised: the sync ledger
  (services.platform.ledger, via src.glue.queue_handlers.handle_sync_event) retries with backoff and, when the budget is
  spent, dead-letters the mark and records `syncStatus=failed` with the last error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from services.clients.advoware import paths as P
from services.clients.errors import (
    ApiError,
    ConflictError,
    IntegrationError,
    NotFoundError,
    is_retryable,
)
from services.parties import mapping as M
from services.platform.logging import ServiceLogger, get_service_logger
from services.platform.models import EntityAction, EntityType, SyncEvent, SyncSource, SyncStatus, espo_datetime

# --------------------------------------------------------------------------- constants

PARTY_LOCK_STEP = "beteiligte_sync"
BANK_LOCK_STEP = "bankverbindungen_sync"

TOPIC_PARTY = "vmh.beteiligte"
TOPIC_BANK = "vmh.bankverbindungen"

PARTY_SNAPSHOT_SCOPE = "beteiligte_sync_snapshots"
"""key = EspoCRM id → {"espoId", "advowareId", "fields", "verifiedAt"}."""
BANK_SNAPSHOT_SCOPE = "bankverbindungen_sync_snapshots"
"""key = EspoCRM id → {"espoId", "advowareId", "betnr", "fields", "verifiedAt"}."""
BANK_INDEX_SCOPE = "bankverbindungen_sync_index"
"""key = Advoware bank account Id → EspoCRM id (so one Advoware account is linked once)."""
KEPT_SCOPE = "beteiligte_sync_kept"
"""key = BetNr → {"espoId", "reason", "at"}: deleted in EspoCRM, kept in Advoware (matters)."""
META_SCOPE = "beteiligte_sync_meta"
BOOKMARK_KEY = "advoware_bookmark"
"""{"geaendertAm": <max GeaendertAm seen>, "betnrs": [BetNrs with exactly that time]}."""

BANK_LINK = "bankverbindungen"
"""EspoCRM link CBeteiligte → CBankverbindungen."""
PARTY_FK = "beteiligteId"

DEFAULT_STALE_AFTER = timedelta(hours=24)
MAX_SYNC_ERROR_LENGTH = 2000
"""syncError notes are cut to this length (the field is expected to be a text field)."""
ADVOWARE_SERVICE = "advoware"
"""`ApiError.service` of errors raised by the Advoware client."""


def topic(base: str, action: EntityAction) -> str:
    return f"{base}.{action.value}"


class SyncOutcome(StrEnum):
    """What one sync run did."""

    CREATED = "created"  # created in Advoware
    LINKED = "linked"  # an existing Advoware record was found and linked (crash recovery)
    UPDATED = "updated"  # changes copied (one or both ways)
    UNCHANGED = "unchanged"  # both sides equal the snapshot: nothing written
    CONFLICT = "conflict"  # changed on both sides; resolved by rule and recorded
    FAILED = "failed"  # invalid data or a permanent Advoware error; recorded in syncError
    WAITING = "waiting_for_party"  # bank account whose party has no advowareId yet
    DELETED_IN_ADVOWARE = "deleted_in_advoware"
    DELETED_IN_ESPOCRM = "deleted_in_espocrm"
    KEPT_IN_ADVOWARE = "kept_in_advoware"  # deleted in EspoCRM, Advoware refused (matters)
    GONE = "gone"  # already absent on both sides


@dataclass
class SyncResult:
    outcome: SyncOutcome
    entity_id: str
    advoware_id: int | None = None
    message: str | None = None
    follow_ups: list[dict[str, Any]] = field(default_factory=list)
    """Queue events (`{"topic", "data"}`) the step should enqueue."""
    conflicts: list[str] = field(default_factory=list)
    """Fields that had changed on both sides (resolved by rule, recorded in syncError)."""

    def log_data(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "entity_id": self.entity_id,
            "advoware_id": self.advoware_id,
            "message": self.message,
            "follow_ups": len(self.follow_ups),
            "conflicts": self.conflicts,
        }


class StateStore(Protocol):
    async def get(self, scope: str, key: str) -> Any: ...

    async def set(self, scope: str, key: str, value: Any) -> Any: ...

    async def delete(self, scope: str, key: str) -> Any: ...

    async def list(self, scope: str) -> list[Any]: ...


def sync_event(
    base: str, entity_id: str, action: EntityAction, source: SyncSource, reason: str | None = None
) -> dict[str, Any]:
    """A `{"topic", "data"}` queue event for one entity."""
    entity_type = EntityType.BETEILIGTE if base == TOPIC_PARTY else EntityType.BANKVERBINDUNGEN
    ev = SyncEvent(entity_type=entity_type, entity_id=entity_id, action=action, source=source, reason=reason)
    return {"topic": topic(base, action), "data": ev.to_queue()}


def webhook_events(base: str, action: EntityAction) -> Callable[[Any, str | None], list[dict[str, Any]]]:
    """`to_events` for services.webhooks.intake.accept_webhook on a CBeteiligte (`base` =
    TOPIC_PARTY) or CBankverbindungen (TOPIC_BANK) webhook: one sync event per record; the
    handler reads both systems itself, so the body's attributes are only noted as changed."""

    def to_events(item: Any, webhook_id: str | None) -> list[dict[str, Any]]:
        event = sync_event(base, item.id, action, SyncSource.WEBHOOK)
        event["data"]["webhook_id"] = webhook_id
        event["data"]["changed_fields"] = sorted(item.attributes) if action is EntityAction.UPDATE else []
        return [event]

    return to_events


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        reason = exc.reason or str(exc)
        return f"{exc.service} {exc.status}: {reason}"
    return f"{type(exc).__name__}: {exc}"


def _same_error(stored: str | None, error: str | None) -> bool:
    """Equal, or `stored` is a (long enough) prefix of `error` - in case EspoCRM's field
    is shorter than our note and cut it: rewriting it every time would ping-pong."""
    if stored == error:
        return True
    return bool(stored and error and len(stored) >= 100 and error.startswith(stored))


def _utc_iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


# --------------------------------------------------------------------------- the sync


class BeteiligteSync:
    """Sync decisions + I/O for one party or bank account at a time (caller holds the lock)."""

    def __init__(
        self,
        espocrm: Any,
        advoware: Any,
        state: StateStore,
        *,
        context: Any = None,
        logger: ServiceLogger | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.espocrm = espocrm
        self.advoware = advoware
        self.state = state
        self.logger = logger or get_service_logger("beteiligte_sync", context)
        self.now = now or (lambda: datetime.now(UTC))

    # ------------------------------------------------------------------ snapshots
    async def _party_snapshot(self, espo_id: str) -> dict[str, Any] | None:
        snap = await self.state.get(PARTY_SNAPSHOT_SCOPE, espo_id)
        return snap if isinstance(snap, dict) else None

    async def _save_party_snapshot(self, espo_id: str, betnr: int, fields: Mapping[str, Any]) -> None:
        await self.state.set(
            PARTY_SNAPSHOT_SCOPE,
            espo_id,
            {"espoId": espo_id, "advowareId": betnr, "fields": dict(fields), "verifiedAt": _utc_iso(self.now())},
        )

    async def _bank_snapshot(self, espo_id: str) -> dict[str, Any] | None:
        snap = await self.state.get(BANK_SNAPSHOT_SCOPE, espo_id)
        return snap if isinstance(snap, dict) else None

    async def _save_bank_snapshot(self, espo_id: str, betnr: int, bank_id: int, fields: Mapping[str, Any]) -> None:
        await self.state.set(
            BANK_SNAPSHOT_SCOPE,
            espo_id,
            {
                "espoId": espo_id,
                "advowareId": bank_id,
                "betnr": betnr,
                "fields": dict(fields),
                "verifiedAt": _utc_iso(self.now()),
            },
        )
        await self.state.set(BANK_INDEX_SCOPE, str(bank_id), espo_id)

    async def _drop_bank_snapshot(self, espo_id: str, snap: Mapping[str, Any] | None) -> None:
        await self.state.delete(BANK_SNAPSHOT_SCOPE, espo_id)
        if snap and snap.get("advowareId") is not None:
            await self.state.delete(BANK_INDEX_SCOPE, str(snap["advowareId"]))

    # ------------------------------------------------------------------ EspoCRM status writes
    def _status_changes(
        self,
        record: Mapping[str, Any],
        status: SyncStatus,
        error: str | None,
        *,
        keep_conflict: bool = False,
    ) -> dict[str, Any]:
        """Only the status attributes that differ from the record (empty: nothing to write)."""
        current = record.get("syncStatus")
        if keep_conflict and current == SyncStatus.CONFLICT.value:
            return {}
        out: dict[str, Any] = {}
        if current != status.value:
            out["syncStatus"] = status.value
        if error is not None:
            error = error[:MAX_SYNC_ERROR_LENGTH]
        if not _same_error(record.get("syncError") or None, error):
            out["syncError"] = error
        return out

    async def _mark(
        self,
        entity_type: EntityType,
        record: Mapping[str, Any],
        status: SyncStatus,
        error: str | None,
        *,
        best_effort: bool = False,
    ) -> None:
        """Write syncStatus/syncError when they differ (never writes the same value twice)."""
        changes = self._status_changes(record, status, error)
        if not changes:
            return
        try:
            await self.espocrm.update_entity(entity_type.value, record["id"], changes)
        except IntegrationError as exc:
            if not best_effort:
                raise
            self.logger.warn(
                f"Could not record syncStatus={status.value} on {entity_type.value} {record['id']}: {exc}",
                entity_id=record["id"],
            )

    async def _fail(
        self, entity_type: EntityType, record: Mapping[str, Any], reason: str, advoware_id: int | None = None
    ) -> SyncResult:
        self.logger.warn(
            f"{entity_type.value} {record['id']} not synced: {reason}", entity_id=record["id"], reason=reason
        )
        await self._mark(entity_type, record, SyncStatus.FAILED, reason)
        return SyncResult(SyncOutcome.FAILED, record["id"], advoware_id, reason)

    async def _guarded(self, entity_type: EntityType, record: Mapping[str, Any], work: Callable[[], Any]) -> SyncResult:
        """Run `work`. Retryable errors: noted as failed (best effort), then raised for the ledger's retry.
        Permanent Advoware errors and invalid data: recorded as failed, no exception.
        Permanent EspoCRM errors: raised (they cannot be recorded in EspoCRM anyway)."""
        try:
            return await work()  # type: ignore[no-any-return]
        except IntegrationError as exc:
            reason = _describe_error(exc)
            if is_retryable(exc):
                self.logger.warn(
                    f"{entity_type.value} {record['id']}: retryable error, the queue will retry: {reason}",
                    entity_id=record["id"],
                )
                await self._mark(entity_type, record, SyncStatus.FAILED, f"vorübergehend: {reason}", best_effort=True)
                raise
            if isinstance(exc, ApiError) and exc.service != ADVOWARE_SERVICE:
                raise
            return await self._fail(entity_type, record, reason)

    # ================================================================== parties
    async def sync_party(self, espo_id: str, *, source: SyncSource = SyncSource.WEBHOOK) -> SyncResult:
        """Bring one party in line on both sides (create, update, conflict or delete)."""
        try:
            record = await self.espocrm.get_entity(EntityType.BETEILIGTE.value, espo_id)
        except NotFoundError:
            return await self.party_deleted_in_espocrm(espo_id)
        return await self._guarded(EntityType.BETEILIGTE, record, lambda: self._sync_party_record(record, source))

    async def _sync_party_record(self, record: dict[str, Any], source: SyncSource) -> SyncResult:
        espo_id = record["id"]
        espo_c = M.espo_party_to_canonical(record)
        snap = await self._party_snapshot(espo_id)
        betnr = _int_or_none(record.get("advowareId"))
        outcome: SyncOutcome | None = None
        base: dict[str, Any] | None = snap["fields"] if snap and snap.get("advowareId") == betnr else None

        if betnr is None:
            errors = M.validate_party(espo_c)
            if errors:
                return await self._fail(EntityType.BETEILIGTE, record, "; ".join(errors))
            party = await self.advoware.find_party_by_external_id(espo_id)
            if party is not None:
                outcome = SyncOutcome.LINKED
                betnr = int(party[P.BeteiligterField.BETNR.value])
                self.logger.info(f"Party {espo_id} already exists in Advoware as {betnr} (ExterneId): linking", entity_id=espo_id)
                base = snap["fields"] if snap and snap.get("advowareId") == betnr else M.advoware_party_to_canonical(party)
            else:
                body = {**M.canonical_party_to_advoware(espo_c), P.BeteiligterField.EXTERNE_ID.value: espo_id}
                party = await self.advoware.create_party(body)
                betnr = int(party[P.BeteiligterField.BETNR.value])
                outcome = SyncOutcome.CREATED
                base = espo_c  # what we sent: Advoware's own normalisation then flows back once
                # Saved at once: a crash before advowareId reaches EspoCRM still finds it (ExterneId).
                await self._save_party_snapshot(espo_id, betnr, base)
                self.logger.info(f"Party {espo_id} created in Advoware as {betnr}", entity_id=espo_id, advoware_id=betnr)
        else:
            try:
                party = await self.advoware.get_party(betnr)
            except NotFoundError:
                return await self.party_deleted_in_advoware(record, betnr)

        externe_id = party.get(P.BeteiligterField.EXTERNE_ID.value)
        if externe_id and externe_id != espo_id and await self._espo_exists(EntityType.BETEILIGTE, externe_id):
            return await self._fail(
                EntityType.BETEILIGTE,
                record,
                f"Advoware-Beteiligter {betnr} ist bereits mit dem EspoCRM-Datensatz {externe_id} verknüpft",
                betnr,
            )
        advo_c = M.advoware_party_to_canonical(party)
        merge = M.three_way_merge(
            base,
            espo_c,
            advo_c,
            espo_modified=M.espo_modified_at(record),
            advo_modified=M.advoware_modified_at(party),
            fields=M.party_fields(),
        )
        errors = M.validate_party(merge.merged)
        if errors:
            return await self._fail(EntityType.BETEILIGTE, record, "; ".join(errors), betnr)

        wrote_advoware = False
        if merge.to_advoware or externe_id != espo_id:
            current = {k: v for k, v in party.items() if k not in P.BETEILIGTER_READ_ONLY}
            body = {
                **current,
                **M.canonical_party_to_advoware(merge.merged),
                P.BeteiligterField.EXTERNE_ID.value: espo_id,
            }
            party = await self.advoware.update_party(betnr, body, merge=False)
            wrote_advoware = True

        espo_changes: dict[str, Any] = {}
        if merge.to_espocrm:
            subset = dict(merge.to_espocrm)
            if M.PartyField.FIRST_NAME.value in subset or M.PartyField.LAST_NAME.value in subset:
                subset[M.PartyField.FIRST_NAME.value] = merge.merged[M.PartyField.FIRST_NAME.value]
                subset[M.PartyField.LAST_NAME.value] = merge.merged[M.PartyField.LAST_NAME.value]
            espo_changes.update(M.canonical_party_to_espo(subset))
        if _int_or_none(record.get("advowareId")) != betnr:
            espo_changes["advowareId"] = betnr
        newly_linked = "advowareId" in espo_changes
        if merge.conflicts:
            note = merge.conflict_note()
            self.logger.warn(
                f"Conflict on party {espo_id}: {note}",
                entity_id=espo_id,
                advoware_id=betnr,
                fields=[c.field for c in merge.conflicts],
            )
            espo_changes.update(self._status_changes(record, SyncStatus.CONFLICT, note))
        else:
            quiet = not (espo_changes or wrote_advoware)
            espo_changes.update(self._status_changes(record, SyncStatus.CLEAN, None, keep_conflict=quiet))
        if espo_changes or wrote_advoware:
            espo_changes["advowareLastSync"] = espo_datetime(self.now())
            await self.espocrm.update_entity(EntityType.BETEILIGTE.value, espo_id, espo_changes)

        await self._save_party_snapshot(espo_id, betnr, merge.merged)

        if outcome is None:
            if merge.conflicts:
                outcome = SyncOutcome.CONFLICT
            elif merge.to_advoware or merge.to_espocrm:
                outcome = SyncOutcome.UPDATED
            else:
                outcome = SyncOutcome.UNCHANGED
        result = SyncResult(outcome, espo_id, betnr, merge.conflict_note(), conflicts=[c.field for c in merge.conflicts])
        if newly_linked or source is SyncSource.CRON:
            if source is SyncSource.CRON:
                await self._import_advoware_banks(espo_id, betnr)
            result.follow_ups = await self._bank_follow_ups(espo_id, source)
        self.logger.info(
            f"Party {espo_id} ↔ {betnr}: {outcome.value}",
            entity_id=espo_id,
            advoware_id=betnr,
            to_advoware=sorted(merge.to_advoware),
            to_espocrm=sorted(merge.to_espocrm),
        )
        return result

    async def _espo_exists(self, entity_type: EntityType, entity_id: str) -> bool:
        try:
            await self.espocrm.get_entity(entity_type.value, entity_id)
        except NotFoundError:
            return False
        return True

    async def _import_advoware_banks(self, espo_id: str, betnr: int) -> int:
        """Bank accounts that exist only in Advoware (no EspoCRM record links them, none of the
        party's EspoCRM accounts has their IBAN) are created in EspoCRM under the party,
        already carrying their `advowareId`; the bank sync then links and snapshots them.
        Runs on the cron's party sweep (Advoware changes to bank accounts don't touch the
        party's GeaendertAm, so the cron is where they are seen)."""
        try:
            accounts = await self.advoware.list_bank_accounts(betnr)
        except NotFoundError:
            return 0
        espo_banks = [
            b async for b in self.espocrm.iter_related(EntityType.BETEILIGTE.value, espo_id, BANK_LINK, select="id,iban,advowareId")
        ]
        known_ids = {_int_or_none(b.get("advowareId")) for b in espo_banks} - {None}
        known_ibans = {M.espo_bank_to_canonical(b)[M.BankField.IBAN.value] for b in espo_banks}
        imported = 0
        for bank in accounts:
            bank_id = int(bank[P.BankverbindungField.ID.value])
            canonical = M.advoware_bank_to_canonical(bank)
            if bank_id in known_ids or canonical[M.BankField.IBAN.value] in known_ibans:
                continue
            if await self.state.get(BANK_INDEX_SCOPE, str(bank_id)) is not None:
                continue  # linked to some EspoCRM record already
            data = {
                **M.canonical_bank_to_espo(canonical),
                PARTY_FK: espo_id,
                "advowareId": bank_id,
                "syncStatus": SyncStatus.PENDING_SYNC.value,
            }
            created = await self.espocrm.create_entity(EntityType.BANKVERBINDUNGEN.value, data, skip_duplicate_check=True)
            await self.state.set(BANK_INDEX_SCOPE, str(bank_id), created["id"])
            imported += 1
            self.logger.info(f"Imported Advoware bank account {bank_id} of party {betnr} into EspoCRM as {created['id']}", entity_id=created["id"])
        return imported

    async def _bank_follow_ups(self, espo_id: str, source: SyncSource) -> list[dict[str, Any]]:
        events = []
        async for bank in self.espocrm.iter_related(EntityType.BETEILIGTE.value, espo_id, BANK_LINK, select="id"):
            events.append(
                sync_event(TOPIC_BANK, bank["id"], EntityAction.UPDATE, SyncSource.SYNC, f"party {espo_id} synced ({source.value})")
            )
        return events

    async def party_deleted_in_espocrm(self, espo_id: str) -> SyncResult:
        """The EspoCRM record is gone: delete the Advoware party unless matters still use it.

        The party's EspoCRM bank accounts (EspoCRM does not cascade) are re-queued: they
        have no party to follow any more and end up `failed`."""
        result = await self._party_deleted_in_espocrm(espo_id)
        where = [{"type": "equals", "attribute": PARTY_FK, "value": espo_id}]
        async for bank in self.espocrm.iter_entities(EntityType.BANKVERBINDUNGEN.value, where=where, select="id"):
            result.follow_ups.append(
                sync_event(TOPIC_BANK, bank["id"], EntityAction.UPDATE, SyncSource.SYNC, f"party {espo_id} deleted")
            )
        return result

    async def _party_deleted_in_espocrm(self, espo_id: str) -> SyncResult:
        snap = await self._party_snapshot(espo_id)
        betnr = _int_or_none(snap.get("advowareId")) if snap else None
        if betnr is None:
            party = await self.advoware.find_party_by_external_id(espo_id)
            betnr = _int_or_none(party.get(P.BeteiligterField.BETNR.value)) if party else None
        if betnr is None:
            await self.state.delete(PARTY_SNAPSHOT_SCOPE, espo_id)
            return SyncResult(SyncOutcome.GONE, espo_id, None, "in keinem System (mehr) vorhanden")
        kept = await self.state.get(KEPT_SCOPE, str(betnr))
        if kept:
            await self.state.delete(PARTY_SNAPSHOT_SCOPE, espo_id)
            return SyncResult(SyncOutcome.KEPT_IN_ADVOWARE, espo_id, betnr, kept.get("reason"))
        try:
            await self.advoware.delete_party(betnr)
        except NotFoundError:
            await self.state.delete(PARTY_SNAPSHOT_SCOPE, espo_id)
            return SyncResult(SyncOutcome.GONE, espo_id, betnr, "in Advoware bereits gelöscht")
        except ConflictError as exc:
            reason = exc.reason or str(exc)
            await self.state.set(
                KEPT_SCOPE, str(betnr), {"espoId": espo_id, "reason": reason, "at": _utc_iso(self.now())}
            )
            await self.state.delete(PARTY_SNAPSHOT_SCOPE, espo_id)
            self.logger.warn(
                f"Party {espo_id} was deleted in EspoCRM but Advoware keeps {betnr}: {reason}",
                entity_id=espo_id,
                advoware_id=betnr,
            )
            return SyncResult(SyncOutcome.KEPT_IN_ADVOWARE, espo_id, betnr, reason)
        await self.state.delete(PARTY_SNAPSHOT_SCOPE, espo_id)
        self.logger.info(f"Party {espo_id} deleted in EspoCRM: deleted {betnr} in Advoware", entity_id=espo_id, advoware_id=betnr)
        return SyncResult(SyncOutcome.DELETED_IN_ADVOWARE, espo_id, betnr)

    async def party_deleted_in_advoware(self, record: Mapping[str, Any], betnr: int) -> SyncResult:
        """The Advoware party is gone: delete the EspoCRM record and its bank accounts."""
        espo_id = record["id"]
        await self.state.delete(PARTY_SNAPSHOT_SCOPE, espo_id)
        banks = [b async for b in self.espocrm.iter_related(EntityType.BETEILIGTE.value, espo_id, BANK_LINK, select="id")]
        for bank in banks:
            await self._drop_bank_snapshot(bank["id"], await self._bank_snapshot(bank["id"]))
            try:
                await self.espocrm.delete_entity(EntityType.BANKVERBINDUNGEN.value, bank["id"])
            except NotFoundError:
                pass
        try:
            await self.espocrm.delete_entity(EntityType.BETEILIGTE.value, espo_id)
        except NotFoundError:
            pass
        self.logger.info(
            f"Party {betnr} was deleted in Advoware: deleted {espo_id} (and {len(banks)} bank account(s)) in EspoCRM",
            entity_id=espo_id,
            advoware_id=betnr,
        )
        return SyncResult(SyncOutcome.DELETED_IN_ESPOCRM, espo_id, betnr)

    # ================================================================== bank accounts
    async def sync_bank(self, espo_id: str, *, source: SyncSource = SyncSource.WEBHOOK) -> SyncResult:
        """Bring one bank account in line on both sides (follows its party)."""
        try:
            record = await self.espocrm.get_entity(EntityType.BANKVERBINDUNGEN.value, espo_id)
        except NotFoundError:
            return await self.bank_deleted_in_espocrm(espo_id)
        return await self._guarded(EntityType.BANKVERBINDUNGEN, record, lambda: self._sync_bank_record(record))

    async def _sync_bank_record(self, record: dict[str, Any]) -> SyncResult:
        espo_id = record["id"]
        espo_c = M.espo_bank_to_canonical(record)
        party_id = record.get(PARTY_FK)
        if not party_id:
            return await self._fail(EntityType.BANKVERBINDUNGEN, record, "keinem Beteiligten zugeordnet (beteiligteId fehlt)")
        try:
            party_rec = await self.espocrm.get_entity(EntityType.BETEILIGTE.value, party_id)
        except NotFoundError:
            await self._drop_bank_snapshot(espo_id, await self._bank_snapshot(espo_id))
            return await self._fail(EntityType.BANKVERBINDUNGEN, record, f"Beteiligter {party_id} existiert nicht (mehr)")
        betnr = _int_or_none(party_rec.get("advowareId"))
        if betnr is None:
            await self._mark(EntityType.BANKVERBINDUNGEN, record, SyncStatus.PENDING_SYNC, "wartet auf die Synchronisierung des Beteiligten")
            return SyncResult(SyncOutcome.WAITING, espo_id, None, f"party {party_id} has no advowareId yet")

        snap = await self._bank_snapshot(espo_id)
        bank_id = _int_or_none(record.get("advowareId"))
        if bank_id is not None and snap and _int_or_none(snap.get("betnr")) not in (None, betnr):
            # The account moved to another party: remove it from the old one, create anew.
            try:
                await self.advoware.delete_bank_account(int(snap["betnr"]), bank_id)
            except NotFoundError:
                pass
            await self._drop_bank_snapshot(espo_id, snap)
            snap, bank_id = None, None

        outcome: SyncOutcome | None = None
        base = snap["fields"] if snap and _int_or_none(snap.get("advowareId")) == bank_id else None
        try:
            accounts = await self.advoware.list_bank_accounts(betnr)
        except NotFoundError:
            accounts = None
        id_field = P.BankverbindungField.ID.value
        if bank_id is None:
            errors = M.validate_bank(espo_c)
            if errors:
                return await self._fail(EntityType.BANKVERBINDUNGEN, record, "; ".join(errors))
            if accounts is None:
                return await self._fail(EntityType.BANKVERBINDUNGEN, record, f"Beteiligter {betnr} existiert in Advoware nicht")
            bank = await self._find_unlinked_bank(accounts, espo_c, espo_id)
            if bank is not None:
                outcome = SyncOutcome.LINKED
                bank_id = int(bank[id_field])
                base = snap["fields"] if snap and _int_or_none(snap.get("advowareId")) == bank_id else M.advoware_bank_to_canonical(bank)
            else:
                bank = await self.advoware.create_bank_account(betnr, M.canonical_bank_to_advoware(espo_c))
                bank_id = int(bank[id_field])
                outcome = SyncOutcome.CREATED
                base = espo_c
                await self._save_bank_snapshot(espo_id, betnr, bank_id, base)
                self.logger.info(f"Bank account {espo_id} created in Advoware as {bank_id} (party {betnr})", entity_id=espo_id)
        else:
            bank = next((b for b in accounts or [] if _int_or_none(b.get(id_field)) == bank_id), None)
            if bank is None:
                return await self.bank_deleted_in_advoware(record, snap)

        advo_c = M.advoware_bank_to_canonical(bank)
        merge = M.three_way_merge(
            base,
            espo_c,
            advo_c,
            espo_modified=M.espo_modified_at(record),
            advo_modified=M.advoware_modified_at(bank),
            fields=M.bank_fields(),
        )
        errors = M.validate_bank(merge.merged)
        if errors:
            return await self._fail(EntityType.BANKVERBINDUNGEN, record, "; ".join(errors), bank_id)
        wrote_advoware = False
        if merge.to_advoware:
            current = {k: v for k, v in bank.items() if k not in P.BANKVERBINDUNG_READ_ONLY}
            body = {**current, **M.canonical_bank_to_advoware(merge.merged)}
            await self.advoware.update_bank_account(betnr, bank_id, body, merge=False)
            wrote_advoware = True
        espo_changes: dict[str, Any] = M.canonical_bank_to_espo(merge.to_espocrm)
        if _int_or_none(record.get("advowareId")) != bank_id:
            espo_changes["advowareId"] = bank_id
        if merge.conflicts:
            note = merge.conflict_note()
            self.logger.warn(f"Conflict on bank account {espo_id}: {note}", entity_id=espo_id, fields=[c.field for c in merge.conflicts])
            espo_changes.update(self._status_changes(record, SyncStatus.CONFLICT, note))
        else:
            quiet = not (espo_changes or wrote_advoware)
            espo_changes.update(self._status_changes(record, SyncStatus.CLEAN, None, keep_conflict=quiet))
        if espo_changes or wrote_advoware:
            espo_changes["advowareLastSync"] = espo_datetime(self.now())
            await self.espocrm.update_entity(EntityType.BANKVERBINDUNGEN.value, espo_id, espo_changes)
        await self._save_bank_snapshot(espo_id, betnr, bank_id, merge.merged)
        if outcome is None:
            if merge.conflicts:
                outcome = SyncOutcome.CONFLICT
            elif merge.to_advoware or merge.to_espocrm:
                outcome = SyncOutcome.UPDATED
            else:
                outcome = SyncOutcome.UNCHANGED
        self.logger.info(f"Bank account {espo_id} ↔ {bank_id}: {outcome.value}", entity_id=espo_id, advoware_id=bank_id)
        return SyncResult(outcome, espo_id, bank_id, merge.conflict_note(), conflicts=[c.field for c in merge.conflicts])

    async def _find_unlinked_bank(
        self, accounts: list[dict[str, Any]], espo_c: Mapping[str, Any], espo_id: str
    ) -> dict[str, Any] | None:
        """An Advoware account with the same IBAN not linked to another EspoCRM record."""
        for bank in accounts:
            if M.advoware_bank_to_canonical(bank)[M.BankField.IBAN.value] != espo_c[M.BankField.IBAN.value]:
                continue
            owner = await self.state.get(BANK_INDEX_SCOPE, str(bank[P.BankverbindungField.ID.value]))
            if owner in (None, espo_id):
                return bank
        return None

    async def bank_deleted_in_espocrm(self, espo_id: str) -> SyncResult:
        snap = await self._bank_snapshot(espo_id)
        if not snap:
            return SyncResult(SyncOutcome.GONE, espo_id, None, "keine Verknüpfung bekannt")
        betnr, bank_id = int(snap["betnr"]), int(snap["advowareId"])
        try:
            await self.advoware.delete_bank_account(betnr, bank_id)
            outcome = SyncOutcome.DELETED_IN_ADVOWARE
        except NotFoundError:
            outcome = SyncOutcome.GONE
        await self._drop_bank_snapshot(espo_id, snap)
        self.logger.info(f"Bank account {espo_id} deleted in EspoCRM: {outcome.value} ({bank_id})", entity_id=espo_id)
        return SyncResult(outcome, espo_id, bank_id)

    async def bank_deleted_in_advoware(self, record: Mapping[str, Any], snap: Mapping[str, Any] | None) -> SyncResult:
        espo_id = record["id"]
        await self._drop_bank_snapshot(espo_id, snap)
        try:
            await self.espocrm.delete_entity(EntityType.BANKVERBINDUNGEN.value, espo_id)
        except NotFoundError:
            pass
        self.logger.info(f"Bank account {record.get('advowareId')} deleted in Advoware: deleted {espo_id} in EspoCRM", entity_id=espo_id)
        return SyncResult(SyncOutcome.DELETED_IN_ESPOCRM, espo_id, _int_or_none(record.get("advowareId")))


# --------------------------------------------------------------------------- cron reconciler


@dataclass
class ReconcileReport:
    events: list[dict[str, Any]] = field(default_factory=list)
    changed_in_advoware: int = 0
    imported: int = 0
    requeued_failed: int = 0
    requeued_stale: int = 0
    missing: int = 0
    bookmark: str | None = None

    _seen: set[tuple[str, str]] = field(default_factory=set)

    def add(self, event: dict[str, Any]) -> None:
        """Queue an event once per (topic, entity)."""
        key = (event["topic"], event["data"]["entity_id"])
        if key not in self._seen:
            self._seen.add(key)
            self.events.append(event)

    def summary(self) -> dict[str, Any]:
        return {
            "events": len(self.events),
            "changed_in_advoware": self.changed_in_advoware,
            "imported": self.imported,
            "requeued_failed": self.requeued_failed,
            "requeued_stale": self.requeued_stale,
            "missing": self.missing,
            "bookmark": self.bookmark,
        }


def next_bookmark(
    bookmark: Mapping[str, Any] | None, parties: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any] | None, list[Mapping[str, Any]]]:
    """Singer-style bookmark: the max `GeaendertAm` seen and the BetNrs at exactly that time.

    Returns the new bookmark and the parties that are new since the old one (those at the
    old bookmark time already handled are left out, since the API filter is `>=`)."""
    old_ts = (bookmark or {}).get("geaendertAm")
    old_at = P.parse_utc(old_ts) if old_ts else None
    seen_at_old = set((bookmark or {}).get("betnrs") or [])
    fresh: list[Mapping[str, Any]] = []
    best_at, best_ids = old_at, set(seen_at_old)
    for party in parties:
        at = M.advoware_modified_at(party)
        betnr = _int_or_none(party.get(P.BeteiligterField.BETNR.value))
        if at is None or betnr is None:
            continue
        if old_at is not None and at < old_at:
            continue
        if old_at is not None and at == old_at and betnr in seen_at_old:
            continue
        fresh.append(party)
        if best_at is None or at > best_at:
            best_at, best_ids = at, {betnr}
        elif at == best_at:
            best_ids.add(betnr)
    if best_at is None:
        return (dict(bookmark) if bookmark else None), fresh
    return {"geaendertAm": P.format_utc(best_at), "betnrs": sorted(best_ids)}, fresh


async def reconcile(
    espocrm: Any,
    advoware: Any,
    state: StateStore,
    *,
    logger: ServiceLogger | None = None,
    now: datetime | None = None,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    import_new: bool = True,
) -> ReconcileReport:
    """One cron sweep; returns the events to enqueue (the step enqueues them).

    1. Parties changed in Advoware since the bookmark → a sync of their EspoCRM record
       (via `ExterneId`, else `advowareId`); unknown ones are imported into EspoCRM.
    2. EspoCRM records with syncStatus failed/pending_sync → re-queued.
    3. Snapshots whose record is missing on either side, or not verified for
       `stale_after` → re-queued (the sync handler decides: delete, or re-check).
    """
    log = logger or get_service_logger("beteiligte_sync_cron")
    now = now or datetime.now(UTC)
    report = ReconcileReport()

    # 1. changed in Advoware
    bookmark = await state.get(META_SCOPE, BOOKMARK_KEY)
    since = bookmark.get("geaendertAm") if isinstance(bookmark, dict) else None
    changed: list[dict[str, Any]] = []
    async for page in advoware.list_parties(changed_since=since):
        changed.extend(page)
    new_bookmark, fresh = next_bookmark(bookmark if isinstance(bookmark, dict) else None, changed)
    for party in fresh:
        betnr = int(party[P.BeteiligterField.BETNR.value])
        espo_id = party.get(P.BeteiligterField.EXTERNE_ID.value)
        if not espo_id:
            found = await espocrm.list_entities(
                EntityType.BETEILIGTE.value,
                where=[{"type": "equals", "attribute": "advowareId", "value": betnr}],
                select="id",
                max_size=1,
            )
            rows = found.get("list", []) if isinstance(found, dict) else []
            if rows:
                espo_id = rows[0]["id"]
            elif import_new and not await state.get(KEPT_SCOPE, str(betnr)):
                canonical = M.advoware_party_to_canonical(party)
                data = {
                    **M.canonical_party_to_espo(canonical),
                    "advowareId": betnr,
                    "syncStatus": SyncStatus.PENDING_SYNC.value,
                }
                created = await espocrm.create_entity(EntityType.BETEILIGTE.value, data, skip_duplicate_check=True)
                espo_id = created["id"]
                report.imported += 1
                log.info(f"Imported Advoware party {betnr} into EspoCRM as {espo_id}", advoware_id=betnr, entity_id=espo_id)
        if espo_id:
            report.changed_in_advoware += 1
            report.add(sync_event(TOPIC_PARTY, str(espo_id), EntityAction.UPDATE, SyncSource.CRON, "changed in Advoware"))
    if new_bookmark is not None and new_bookmark != bookmark:
        await state.set(META_SCOPE, BOOKMARK_KEY, new_bookmark)
    report.bookmark = (new_bookmark or {}).get("geaendertAm") if new_bookmark else None

    # 2. failed / pending
    retry_where = [{"type": "in", "attribute": "syncStatus", "value": [SyncStatus.FAILED.value, SyncStatus.PENDING_SYNC.value]}]
    for entity_type, base in ((EntityType.BETEILIGTE, TOPIC_PARTY), (EntityType.BANKVERBINDUNGEN, TOPIC_BANK)):
        async for rec in espocrm.iter_entities(entity_type.value, where=retry_where, select="id"):
            report.requeued_failed += 1
            report.add(sync_event(base, rec["id"], EntityAction.UPDATE, SyncSource.CRON, "retry failed/pending"))

    # 3. deleted on either side, or stale
    party_snaps = [s for s in await state.list(PARTY_SNAPSHOT_SCOPE) if isinstance(s, dict)]
    bank_snaps = [s for s in await state.list(BANK_SNAPSHOT_SCOPE) if isinstance(s, dict)]
    if party_snaps:
        betnrs: set[int] = set()
        async for page in advoware.list_parties():
            betnrs.update(int(p[P.BeteiligterField.BETNR.value]) for p in page)
        espo_ids = {r["id"] async for r in espocrm.iter_entities(EntityType.BETEILIGTE.value, select="id")}
        for snap in party_snaps:
            espo_id = snap.get("espoId")
            if not espo_id:
                continue
            if _int_or_none(snap.get("advowareId")) not in betnrs or espo_id not in espo_ids:
                report.missing += 1
                report.add(sync_event(TOPIC_PARTY, espo_id, EntityAction.UPDATE, SyncSource.CRON, "missing on one side"))
            elif _is_stale(snap, now, stale_after):
                report.requeued_stale += 1
                report.add(sync_event(TOPIC_PARTY, espo_id, EntityAction.UPDATE, SyncSource.CRON, "stale"))
    for snap in bank_snaps:
        espo_id = snap.get("espoId")
        if espo_id and _is_stale(snap, now, stale_after):
            report.requeued_stale += 1
            report.add(sync_event(TOPIC_BANK, espo_id, EntityAction.UPDATE, SyncSource.CRON, "stale"))
    log.info("Beteiligte reconcile sweep done", **report.summary())
    return report


def _is_stale(snap: Mapping[str, Any], now: datetime, stale_after: timedelta) -> bool:
    raw = snap.get("verifiedAt")
    if not raw:
        return True
    try:
        at = datetime.fromisoformat(str(raw))
    except ValueError:
        return True
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return now - at >= stale_after
