"""The entity view (`GET /ops/entities/{type}/{id}`, `bitbylaw-ops status`): one entity's sync
fields in EspoCRM, its counterpart in every other system, what the sync would do now and why,
and the sync's bookkeeping (services.ops.view). Read-only; at most VIEW_MAX_CALLS API calls
(services.clients.http.CallMeter); a system that cannot be read is named in `errors` and the
rest is still shown.

Documents: the record, its linked entities and their collections, the sync's plan for it now
(services.documents.plan: up to date, waiting for a collection, no sync and why, or a sync),
the xAI file and, per required or recorded collection, whether xAI holds the file there and in
which indexing state, and the upload journal. This answers "why is document X not searchable":
no collection-bearing link, waiting for a collection, missing from a collection although
clean, not yet indexed or failed in xAI, or the last sync failed.

Accounts and eviction cases (collection owners): the rule's verdict, the stored collection and
whether xAI has it (and names this entity), and the linked documents with their sync state and
whether their file is in the collection. Parties, bank accounts and employees:
services.ops.status_sync.
"""

from __future__ import annotations

from typing import Any

from services.clients.http import CallMeter, metered
from services.clients.xai import XAIDocumentStatus, document_status
from services.documents.collections import META_ENTITY_ID, META_ENTITY_TYPE
from services.documents.executor import DocumentSyncService
from services.documents.journal import JOURNAL_SCOPE
from services.documents.plan import ENTITY_DOCUMENTS_LINK, SyncDecision, plan_document_sync
from services.ops.entities import EntityRef, OpsEntityType, ref_for_espocrm
from services.ops.status_sync import BANK_FIELDS, PARTY_FIELDS, bank_view, employee_view, party_view
from services.ops.systems import Systems
from services.ops.view import View, add_bookkeeping
from services.platform.models import DocumentRecord, XAISyncStatus

VIEW_MAX_CALLS = 120
"""API calls one entity view may make (a document in many collections, an owner's documents)."""
DOCUMENTS_SHOWN = 50
"""An owner's linked documents listed (and checked against its collection) at most."""
DOCUMENT_FIELDS = ("name", "fileId", "fileName", "fileStatus", "md5sum", "sha256", "xaiId", "xaiCollections",
                   "xaiSyncedHash", "xaiSyncStatus", "xaiSyncError", "xaiLastSync", "modifiedAt")
OWNER_FIELDS = ("name", "status", "xaiCollectionId", "xaiCollectionEnabled", "modifiedAt")


async def _document(systems: Systems, view: View) -> None:
    raw = await view.espocrm_record(systems, DOCUMENT_FIELDS)
    if raw is None:
        return
    doc = DocumentRecord.model_validate(raw)
    service = DocumentSyncService(systems.espocrm, systems.xai, systems.settings.xai)
    linked = []
    async with view.reading("espocrm"):
        linked = await service.load_linked_entities(doc.id)
    plan = plan_document_sync(doc, linked)
    view.counterparts["links"] = [
        {"entity": _ref_json(e.entity_type.value, e.entity_id), "should_have_collection": e.should_have_collection,
         "collection_id": e.collection_id} for e in linked]
    view.counterparts["plan"] = {"decision": plan.decision.value, "reason": plan.reason, "required": plan.required,
                                 "remove_from": plan.remove_from, "missing": [f"{e.entity_type.value}:{e.entity_id}" for e in plan.missing]}
    xai: dict[str, Any] = {"file": None, "collections": []}
    view.counterparts["xai"] = xai
    recorded = list(doc.xaiCollections)
    async with view.reading("xai"):
        if doc.xaiId:
            xai["file"] = await systems.xai.get_file(doc.xaiId)
            if xai["file"] is None:
                view.problems.append(f"xAI has no file {doc.xaiId} (the record's xaiId)")
        for cid in sorted(set(plan.required) | set(recorded)):
            member = await systems.xai.get_document(cid, doc.xaiId) if doc.xaiId else None
            status = document_status(member).value if member is not None else None
            xai["collections"].append({"collection_id": cid, "required": cid in plan.required, "recorded": cid in recorded,
                                       "present": member is not None, "status": status})
            _membership_problems(view, doc, cid, cid in plan.required, member is not None, status)
    async with view.reading("state"):
        view.counterparts["journal"] = await systems.state.get(JOURNAL_SCOPE, doc.id)
    _document_explanation(view, doc, plan.decision, plan.reason)


def _membership_problems(view: View, doc: DocumentRecord, cid: str, required: bool, present: bool, status: str | None) -> None:
    clean = doc.xaiSyncStatus == XAISyncStatus.CLEAN
    if required and not present and clean:
        view.problems.append(f"EspoCRM marks it clean, but xAI collection {cid} lacks its file {doc.xaiId}: searches there cannot find it "
                             "(repair: resync, which first drops the collection from xaiCollections)")
    elif not required and present:
        view.problems.append(f"its file is still in collection {cid}, which it no longer belongs to")
    elif present and status == XAIDocumentStatus.FAILED.value:
        view.problems.append(f"xAI failed to index it in collection {cid} (status FAILED): it is not searchable there")
    elif present and status == XAIDocumentStatus.PROCESSING.value:
        view.notes.append(f"xAI is still indexing it in collection {cid}.")


def _document_explanation(view: View, doc: DocumentRecord, decision: SyncDecision, reason: str) -> None:
    if doc.xaiSyncStatus == XAISyncStatus.FAILED:
        view.problems.append(f"its last sync failed: {doc.xaiSyncError or 'no reason recorded'}")
    if decision is SyncDecision.WAIT_FOR_COLLECTIONS:
        view.problems.append(f"it waits for a collection: {reason}")
    elif decision is SyncDecision.NO_SYNC:
        view.notes.append(f"It is not meant to be in xAI: {reason}.")
    elif decision is SyncDecision.SYNC:
        view.notes.append(f"The sync would work on it now ({reason}).")
    elif decision is SyncDecision.MIGRATE_HASH:
        view.notes.append("Its xaiSyncedHash is a legacy SHA-256; the reconciler migrates it.")


def _ref_json(espocrm_type: str, entity_id: str) -> dict[str, Any]:
    ref = ref_for_espocrm(espocrm_type, entity_id)
    return ref.as_json() if ref else {"type": None, "id": entity_id, "espocrm_type": espocrm_type, "path": None}


async def _owner(systems: Systems, view: View) -> None:
    """Account / Raeumungsklage: the rule, the collection, the linked documents."""
    espo_type = view.ref.espocrm_type
    assert espo_type is not None
    raw = await view.espocrm_record(systems, OWNER_FIELDS)
    if raw is None:
        return
    should = systems.settings.xai.should_have_collection(espo_type.value, raw)
    rule = systems.settings.xai.collection_rule_for(espo_type.value)
    cid = raw.get("xaiCollectionId") or None
    col: dict[str, Any] = {"should_have": should, "rule": f"{rule.field}={rule.value}" if rule else None, "collection_id": cid,
                           "exists": None, "metadata": None, "files": None}
    view.counterparts["xai"] = col
    files: set[str] = set()
    async with view.reading("xai"):
        if cid:
            found = await systems.xai.get_collection(cid)
            col["exists"] = found is not None
            if found is None:
                view.problems.append(f"its collection {cid} is gone from xAI (resync: the collection check creates a new one)")
            else:
                col["metadata"] = found.get("metadata")
                meta = found.get("metadata") or {}
                if (meta.get(META_ENTITY_TYPE), meta.get(META_ENTITY_ID)) != (espo_type.value, view.ref.id):
                    view.problems.append(f"collection {cid}'s metadata names {meta.get(META_ENTITY_TYPE)} {meta.get(META_ENTITY_ID)}, not this entity")
                async for d in systems.xai.list_documents(cid):
                    files.add(str((d.get("file_metadata") or {}).get("file_id") or ""))
                col["files"] = len(files)
    if should and not cid:
        view.problems.append("its rule wants an xAI collection, but xaiCollectionId is empty (resync: the collection check creates or adopts one)")
    elif not should and cid:
        view.notes.append("Its rule wants no collection any more; the reconciler deletes it (files stay).")
    docs: list[dict[str, Any]] = []
    view.counterparts["documents"] = docs
    async with view.reading("espocrm"):
        page = await systems.espocrm.list_related(espo_type.value, view.ref.id, ENTITY_DOCUMENTS_LINK, max_size=DOCUMENTS_SHOWN,
                                                  select="id,name,xaiId,xaiSyncStatus,xaiCollections,fileId")
        col["documents_linked"] = page.get("total")
        for d in page.get("list") or []:
            in_collection = bool(d.get("xaiId")) and str(d["xaiId"]) in files if col.get("files") is not None else None
            docs.append({"entity": EntityRef(OpsEntityType.DOCUMENT, str(d["id"])).as_json(), "name": d.get("name"),
                         "xaiSyncStatus": d.get("xaiSyncStatus"), "xaiId": d.get("xaiId"), "in_collection": in_collection})
            if in_collection is False and d.get("xaiSyncStatus") == XAISyncStatus.CLEAN.value:
                view.problems.append(f"document {d['id']} is marked clean, but its file is not in collection {cid}")


_GATHER = {
    OpsEntityType.DOCUMENT: _document,
    OpsEntityType.ACCOUNT: _owner,
    OpsEntityType.EVICTION_CASE: _owner,
    OpsEntityType.PARTY: party_view,
    OpsEntityType.BANK_ACCOUNT: bank_view,
    OpsEntityType.EMPLOYEE: employee_view,
}


async def entity_status(systems: Systems, ref: EntityRef, *, max_calls: int = VIEW_MAX_CALLS) -> dict[str, Any]:
    """The whole view of one entity as JSON (see the module docstring and services.ops.view)."""
    view = View(ref)
    with metered(CallMeter(max_calls)) as meter:
        await _GATHER[ref.type](systems, view)
    await add_bookkeeping(systems, view)
    view.calls = meter.total
    return view.as_json()


__all__ = ["BANK_FIELDS", "DOCUMENT_FIELDS", "OWNER_FIELDS", "PARTY_FIELDS", "VIEW_MAX_CALLS", "entity_status"]
