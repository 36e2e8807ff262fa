"""The "resync now" action (`POST /ops/entities/{type}/{id}/resync`, `bitbylaw-ops resync`): the events that
make the syncs look at one entity again, queued through the ledger (marked, then enqueued; a
dead mark is revived: an operator asked).

What is queued:
- document: its sync. The document sync trusts its record of xAI (`xaiCollections`), so first
  every recorded collection is asked whether it holds the file; those that do not are dropped
  from the record (services.ops.audit.repair.correct_record), so the sync adds the file again.
- party: its sync and its collection check; bank account: its sync;
- account / eviction case: its collection check and the sync of each linked document (at most
  MAX_DOCUMENTS);
- employee: a calendar sync of that employee (`full` by default: the whole window re-read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.calendar.jobs import TOPIC_SYNC_EMPLOYEE, EmployeeSyncJob
from services.clients.errors import NotFoundError
from services.documents.events import collection_event, document_event
from services.documents.plan import ENTITY_DOCUMENTS_LINK
from services.ops.audit.repair import RECORD_FIELD, correct_record
from services.ops.entities import EntityRef, OpsEntityType
from services.ops.systems import Systems
from services.parties.events import TOPIC_BANK, TOPIC_PARTY, sync_event
from services.platform.ledger import mark_and_enqueue
from services.platform.models import EntityAction, EntityType, SyncSource

MAX_DOCUMENTS = 500
REASON = "operator resync"


class NotResyncable(LookupError):
    """The entity cannot be resynced (an employee without a calendar): the API answers 404."""


@dataclass
class ResyncPlan:
    events: list[dict[str, Any]] = field(default_factory=list)
    prepared: list[str] = field(default_factory=list)
    """Corrections made before queueing, in words."""


async def _document(systems: Systems, doc_id: str, plan: ResyncPlan) -> None:
    try:
        doc = await systems.espocrm.get_entity(EntityType.DOKUMENTE.value, doc_id)
    except NotFoundError:
        doc = None
    if doc is not None and doc.get("xaiId"):
        absent = [cid for cid in doc.get(RECORD_FIELD) or [] if await systems.xai.get_document(str(cid), str(doc["xaiId"])) is None]
        if absent:
            changed = await correct_record(systems.espocrm, {"entity_type": EntityType.DOKUMENTE.value, "entity_id": doc_id,
                                                             "field": RECORD_FIELD, "add": [], "remove": absent})
            if changed:
                plan.prepared.append(changed + " (xAI does not hold the file there)")
    action = EntityAction.UPDATE if doc is not None else EntityAction.DELETE
    plan.events.append(document_event(doc_id, action, source=SyncSource.MANUAL, reason=REASON))


async def resync_plan(systems: Systems, ref: EntityRef, *, full: bool = True) -> ResyncPlan:
    """What to queue for `ref` (rules: module docstring); NotResyncable for an unknown employee."""
    plan = ResyncPlan()
    if ref.type is OpsEntityType.DOCUMENT:
        await _document(systems, ref.id, plan)
    elif ref.type is OpsEntityType.PARTY:
        plan.events += [sync_event(TOPIC_PARTY, ref.id, EntityAction.UPDATE, SyncSource.MANUAL, REASON),
                        collection_event(EntityType.BETEILIGTE, ref.id, source=SyncSource.MANUAL, reason=REASON)]
    elif ref.type is OpsEntityType.BANK_ACCOUNT:
        plan.events.append(sync_event(TOPIC_BANK, ref.id, EntityAction.UPDATE, SyncSource.MANUAL, REASON))
    elif ref.type is OpsEntityType.EMPLOYEE:
        if ref.id not in systems.settings.calendar.mapping:
            raise NotResyncable(f"{ref.id} is not in CALENDAR_MAPPING: there is no calendar to sync")
        job = EmployeeSyncJob(kuerzel=ref.id, full=full, source=SyncSource.MANUAL)
        plan.events.append({"topic": TOPIC_SYNC_EMPLOYEE, "data": job.to_queue()})
    else:
        espo = ref.espocrm_type
        assert espo is not None
        plan.events.append(collection_event(espo, ref.id, source=SyncSource.MANUAL, reason=REASON))
        try:
            page = await systems.espocrm.list_related(espo.value, ref.id, ENTITY_DOCUMENTS_LINK, max_size=MAX_DOCUMENTS, select="id")
        except NotFoundError:
            page = {}
        plan.events += [document_event(str(d["id"]), source=SyncSource.MANUAL, reason=f"{REASON} of {espo.value} {ref.id}",
                                       related_entity_type=espo, related_entity_id=ref.id) for d in page.get("list") or []]
    return plan


async def resync(systems: Systems, ref: EntityRef, ctx: Any, *, full: bool = True) -> dict[str, Any]:
    """Queue the resync of `ref`; returns `{entity, queued: [marks], prepared: [...]}`."""
    plan = await resync_plan(systems, ref, full=full)
    marks = await mark_and_enqueue(systems.ledger, ctx, plan.events)
    queued = [{"kind": m.kind.value, "entity_id": m.entity_id, "seq": m.seq, "outcome": m.outcome.value, "topic": m.topic} for m in marks]
    trace = getattr(ctx, "trace_id", None)
    for entity in ref.activity_entities():
        await systems.activity.add(entity, "info", f"{REASON}: {len(queued)} sync(s) queued" + (f"; {'; '.join(plan.prepared)}" if plan.prepared else ""),
                                   {"queued": [f"{q['kind']}:{q['entity_id']}" for q in queued][:20]},
                                   trace_id=trace if isinstance(trace, str) else None)
    return {"entity": ref.as_json(), "queued": queued, "prepared": plan.prepared}


__all__ = ["MAX_DOCUMENTS", "NotResyncable", "ResyncPlan", "resync", "resync_plan"]
