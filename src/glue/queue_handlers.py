"""The queue handlers of the document, collection, calendar, party and bank-account steps,
on the sync ledger (step glue: they take the engine's `ctx`; the syncs they run are services).

Each validates the event (a malformed one is logged and dropped), then hands the run to
services.platform.ledger.run_marked: the run works from the ledger mark's latest payload, under
the kind's time-box and concurrency limit, and returns its follow-up events (marked,
then enqueued). Failures are the ledger's business (backoff, dead list, the entity's
failure fields); these handlers raise only when the ledger itself (Redis) fails.
Every per-entity sync runs under its entity lock, taken here and only here
(src/glue/locking.sync_lock); the services they call take none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from services.calendar.jobs import TOPIC_SYNC_ALL, TOPIC_SYNC_EMPLOYEE, EmployeeSyncJob, SyncAllJob, employee_jobs, parse_job
from services.clients.errors import ValidationError
from services.documents.events import DOCUMENT_TOPICS, TOPIC_COLLECTION_ENSURE, TOPIC_DOCUMENT_UPDATE
from services.documents.executor import DOCUMENT_SYNC_LOCK_STEP, DocumentSyncService
from services.documents.journal import StateJournal
from services.documents.links import CHANGES_SCOPE, LINKS_SCOPE
from services.documents.results import SyncResult
from services.parties.events import BANK_LOCK_STEP, PARTY_LOCK_STEP, TOPIC_BANK, TOPIC_PARTY, topic
from services.parties.executor import BeteiligteSync
from services.platform.container import get_advoware, get_espocrm, get_google_calendar, get_ledger, get_xai
from services.platform.deletion_guard import get_deletion_guard
from services.platform.ledger import Claim, RunReport, SyncKind, run_marked
from services.platform.logging import get_service_logger
from services.platform.models import EntityType, SyncEvent
from services.platform.settings import get_settings
from src.glue.locking import sync_lock


def _parse_sync_event(data: Any, ctx: Any, what: str) -> SyncEvent | None:
    try:
        return SyncEvent.from_queue(data)
    except ValidationError as exc:
        ctx.logger.error(f"Dropping malformed {what} event: {exc}", {"data": data})
        return None


async def _run_sync_event(
    data: Any,
    ctx: Any,
    what: str,
    kind: SyncKind,
    sync: Callable[[SyncEvent], Awaitable[list[dict[str, Any]]]],
    *,
    topic_of: Callable[[SyncEvent], str],
    ledger: Any = None,
    entity_of: Callable[[Any, SyncEvent], str] | None = None,
) -> RunReport | None:
    """A SyncEvent handler's frame: validate the event (a malformed one is logged and dropped),
    then run_marked under `kind` and the entity (`entity_of(ledger, event)`, default its id):
    `sync` gets the mark's latest payload and returns the follow-ups."""
    event = _parse_sync_event(data, ctx, what)
    if event is None:
        return None

    async def work(claim: Claim) -> list[dict[str, Any]]:
        return await sync(SyncEvent.from_queue(claim.data))

    ledger = ledger or get_ledger()
    entity = entity_of(ledger, event) if entity_of is not None else event.entity_id
    return await run_marked(ledger, kind, entity, {"topic": topic_of(event), "data": data}, ctx, work)


async def run_document_sync(service: DocumentSyncService, event: SyncEvent, *, redis: Any = None, wait: float | None = None) -> SyncResult:
    """One document event: the cheap check without the lock first (an echo costs nothing, an
    unchanged document one read and never takes the lock), else `handle` under
    `document_sync:CDokumente:{id}` (sync_lock; busy → LockBusyError), which reads anew."""
    quick = await service.precheck(event)
    if quick is not None:
        return quick
    async with sync_lock(DOCUMENT_SYNC_LOCK_STEP, EntityType.DOKUMENTE, event.entity_id, logger=service.log, redis=redis, wait=wait):
        return await service.handle(event)


async def handle_document_event(data: Any, ctx: Any, *, ledger: Any = None) -> RunReport | None:
    """`vmh.document.{create,update,delete}`: services.documents.executor.DocumentSyncService
    (idempotent, under the lock `document_sync:CDokumente:{id}`)."""
    settings = get_settings()

    async def sync(current: SyncEvent) -> list[dict[str, Any]]:
        service = DocumentSyncService(
            get_espocrm(), get_xai(), settings.xai, journal=StateJournal(ctx.state), links=StateJournal(ctx.state, LINKS_SCOPE),
            changes=StateJournal(ctx.state, CHANGES_SCOPE), ctx=ctx,
        )
        result = await run_document_sync(service, current)
        ctx.logger.info(
            f"document {current.entity_id}: {result.outcome}",
            {"document_id": current.entity_id, "action": str(current.action), "source": str(current.source),
             "outcome": str(result.outcome), "uploaded": result.uploaded, "file_id": result.file_id,
             "collections": result.collections, "follow_ups": len(result.events), "detail": result.detail},
        )
        return result.events

    return await _run_sync_event(
        data, ctx, "document", SyncKind.DOCUMENT, sync, ledger=ledger, topic_of=lambda e: DOCUMENT_TOPICS.get(e.action, TOPIC_DOCUMENT_UPDATE)
    )


async def handle_collection_event(data: Any, ctx: Any, *, ledger: Any = None) -> RunReport | None:
    """`vmh.collection.ensure`: services.documents.collections.CollectionManager (under the lock
    `collection_create:{type}:{id}`); follow-ups are the linked documents' updates."""
    from services.documents.collections import COLLECTION_LOCK_STEP, CollectionManager

    settings = get_settings()

    async def sync(current: SyncEvent) -> list[dict[str, Any]]:
        manager = CollectionManager(get_espocrm(), get_xai(), settings.xai, changes=StateJournal(ctx.state, CHANGES_SCOPE), ctx=ctx)
        async with sync_lock(COLLECTION_LOCK_STEP, current.entity_type, current.entity_id, logger=manager.log):
            result = await manager.ensure(current.entity_type, current.entity_id)
        ctx.logger.info(
            f"collection {current.entity_type}:{current.entity_id}: {result.action}",
            {"entity_type": str(current.entity_type), "entity_id": current.entity_id, "action": str(result.action),
             "collection_id": result.collection_id, "documents_queued": len(result.events)},
        )
        return result.events

    return await _run_sync_event(
        data, ctx, "collection", SyncKind.COLLECTION, sync, ledger=ledger, topic_of=lambda _: TOPIC_COLLECTION_ENSURE,
        entity_of=lambda ledger, event: ledger.policy(SyncKind.COLLECTION).key(event.to_queue()),
    )


async def handle_calendar_all_event(data: Any, ctx: Any, *, ledger: Any = None) -> RunReport | None:
    """`calendar.sync.all`: one `calendar.sync.employee` per mapped employee (marked, then queued)."""
    try:
        parse_job(SyncAllJob, data)
    except ValidationError as exc:
        ctx.logger.error(f"calendar sync fan-out: invalid payload dropped: {exc}", {"data": data})
        return None

    async def work(claim: Claim) -> list[dict[str, Any]]:
        job = parse_job(SyncAllJob, claim.data)
        mapping = get_settings().calendar.mapping
        if not mapping:
            ctx.logger.warn("calendar sync fan-out: CALENDAR_MAPPING is empty, nothing to sync", {})
            return []
        ctx.logger.info("calendar sync fan-out", {"employees": sorted(mapping), "full": job.full, "source": job.source.value})
        return employee_jobs(mapping, full=job.full, source=job.source)

    return await run_marked(ledger or get_ledger(), SyncKind.CALENDAR_ALL, "all", {"topic": TOPIC_SYNC_ALL, "data": data}, ctx, work)


async def handle_calendar_employee_event(data: Any, ctx: Any, *, ledger: Any = None) -> RunReport | None:
    """`calendar.sync.employee`: services.calendar.sync.run_employee_sync under the lock
    `calendar_sync:Mitarbeiter:{Kürzel}` (it records every run in `calendar_sync_status`)."""
    from services.calendar.sync import LOCK_ENTITY_TYPE, LOCK_STEP, run_employee_sync
    try:
        job = parse_job(EmployeeSyncJob, data)
    except ValidationError as exc:
        ctx.logger.error(f"calendar sync: invalid payload dropped: {exc}", {"data": data})
        return None
    settings = get_settings()

    async def work(claim: Claim) -> list[dict[str, Any]]:
        current = parse_job(EmployeeSyncJob, claim.data)
        calendar_id = settings.calendar.mapping.get(current.kuerzel)
        if calendar_id is None:
            ctx.logger.warn(f"calendar sync: no calendar mapped for {current.kuerzel}; skipped", {"kuerzel": current.kuerzel})
            return []
        log = get_service_logger("calendar_sync", ctx).bind(kuerzel=current.kuerzel, calendar_id=calendar_id)
        async with sync_lock(LOCK_STEP, LOCK_ENTITY_TYPE, current.kuerzel, logger=log):
            await run_employee_sync(
                current.kuerzel, calendar_id, advoware=get_advoware(), google=get_google_calendar(), state=ctx.state,
                settings=settings.calendar, logger=log, full=current.full, attempt=claim.attempts + 1, guard=get_deletion_guard(),
            )
        return []

    return await run_marked(
        ledger or get_ledger(), SyncKind.CALENDAR_EMPLOYEE, job.kuerzel, {"topic": TOPIC_SYNC_EMPLOYEE, "data": data}, ctx, work
    )



async def handle_sync_event(data: Any, ctx: Any, entity_type: EntityType, *, ledger: Any = None) -> RunReport | None:
    """`vmh.beteiligte.*` (CBeteiligte) or `vmh.bankverbindungen.*` (CBankverbindungen), on the
    sync ledger (run_marked): validate the event, then sync the record of the mark's latest
    payload (services.parties.executor.BeteiligteSync) under its entity lock, return the
    follow-ups (the party's bank accounts; marked, then queued) and log the outcome. A
    malformed event is logged and dropped; failures are rescheduled or dead-lettered by the
    ledger (exhausted: `syncStatus=failed` with the reason); only a ledger failure raises."""
    party = entity_type is EntityType.BETEILIGTE
    name = "beteiligte" if party else "bankverbindungen"
    logger = get_service_logger(f"{name}_sync", ctx)
    lock_step = PARTY_LOCK_STEP if party else BANK_LOCK_STEP

    async def sync(current: SyncEvent) -> list[dict[str, Any]]:
        service = BeteiligteSync(get_espocrm(), get_advoware(), ctx.state, context=ctx, guard=get_deletion_guard())
        async with sync_lock(lock_step, entity_type, current.entity_id, logger=logger):
            if party:
                result = await service.sync_party(current.entity_id, source=current.source)
            else:
                result = await service.sync_bank(current.entity_id, source=current.source)
        ctx.logger.info(f"{name} sync {current.action.value} {current.entity_id}: {result.outcome.value}", result.log_data())
        return result.follow_ups

    kind = SyncKind.PARTY if party else SyncKind.BANK_ACCOUNT
    base = TOPIC_PARTY if party else TOPIC_BANK
    return await _run_sync_event(data, ctx, name, kind, sync, ledger=ledger, topic_of=lambda e: topic(base, e.action))
