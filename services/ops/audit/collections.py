"""The drift audit's rules for xAI collections and the documents in them: pure functions over
pages already fetched (services.ops.audit.executor fetches them), no I/O.

Ownership (`ownership_findings`), from every entity of the collection-bearing types and every
xAI collection:
- an entity whose rule wants a collection and that stores none → ENTITY_WITHOUT_COLLECTION
  (a collection whose metadata names it is noted: the collection manager adopts it); one whose
  stored collection is not in xAI's list → the same (the manager creates a new one). Repair: the
  entity's collection check (`vmh.collection.ensure`).
- a collection without our metadata → COLLECTION_WITHOUT_OWNER, by hand (not ours to touch);
  naming an entity EspoCRM does not list → the same, repaired by the entity's collection check
  (the manager reads the entity, and only when EspoCRM answers 404 deletes the collections naming
  it; the files stay); naming an entity that keeps another collection, or none while its rule
  wants none → by hand (the sync never deletes a collection an existing entity might want).
  "Does not list" is only concluded from a complete listing of that entity type.

Memberships (`membership_findings`), per owned collection, from the owner's linked documents
(EspoCRM) and the collection's documents (xAI):
- a linked document marked clean (`xaiSyncStatus=clean`, with `fileId` and `xaiId`) whose
  `xaiId` the collection lacks → DOCUMENT_NOT_IN_COLLECTION. The document sync trusts its
  record (`xaiCollections`): the repair first removes the collection from that record, then
  queues the sync, which adds the file back (no upload when the hashes prove the content).
- a file whose `espocrm_document_id` is not linked to the owner (`strays`; the executor then
  looks the ids up) → FILE_WITHOUT_DOCUMENT (`stray_findings`): document gone → its delete is
  queued with this collection (the sync removes the file only after EspoCRM confirms the delete:
  404 and not in its list; the file stays); document unlinked and the file is its `xaiId` →
  the collection is added to its record and its sync queued (it then removes the file); a file
  that is not the document's current `xaiId` (an older version) or has no document field → by
  hand. A linked document that is clean but holds another file there → the older version case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.documents.collections import META_ENTITY_ID, META_ENTITY_TYPE
from services.documents.events import collection_event, document_event
from services.documents.executor import DOCUMENT_FIELD_ID
from services.ops.audit.model import Finding, FindingType, Repair, RepairAction
from services.ops.audit.repair import record_correction
from services.ops.entities import EntityRef, OpsEntityType, ref_for_espocrm
from services.platform.models import LINKABLE_ENTITY_TYPES, EntityAction, EntityType, SyncSource, XAISyncStatus

SOURCE = SyncSource.MANUAL
"""Repairs are operators' actions."""


@dataclass(frozen=True)
class Owner:
    """An entity of a collection-bearing type as the audit sees it."""

    entity_type: EntityType
    id: str
    name: str
    collection_id: str | None
    should_have: bool

    @property
    def ref(self) -> EntityRef:
        ref = ref_for_espocrm(self.entity_type.value, self.id)
        assert ref is not None
        return ref

    @property
    def label(self) -> str:
        return f"{self.entity_type.value} {self.id} \"{self.name}\""


def _ensure(owner_type: EntityType, owner_id: str, why: str) -> Repair:
    return Repair(RepairAction.RESYNC, f"queue the collection check of {owner_type.value} {owner_id} (vmh.collection.ensure)",
                  (collection_event(owner_type, owner_id, source=SOURCE, reason=f"ops audit: {why}"),))


def _record_and_resync(doc_id: str, description: str, why: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Repair:
    return Repair(RepairAction.RECORD_AND_RESYNC, description,
                  (document_event(doc_id, EntityAction.UPDATE, source=SOURCE, reason=f"ops audit: {why}"),),
                  record_correction(doc_id, add=add, remove=remove))


def _meta(collection: Mapping[str, Any]) -> tuple[str, str]:
    meta = collection.get("metadata") or {}
    if not isinstance(meta, Mapping):
        return "", ""
    return str(meta.get(META_ENTITY_TYPE) or ""), str(meta.get(META_ENTITY_ID) or "")


def ownership_findings(owners: Iterable[Owner], collections: Iterable[Mapping[str, Any]], *,
                       complete_types: Iterable[EntityType], collections_complete: bool) -> list[Finding]:
    """ENTITY_WITHOUT_COLLECTION and COLLECTION_WITHOUT_OWNER (rules: module docstring)."""
    owners = list(owners)
    collections = list(collections)
    complete = set(complete_types)
    by_key = {(o.entity_type.value, o.id): o for o in owners}
    xai_ids = {str(c.get("collection_id")) for c in collections if c.get("collection_id")}
    naming: dict[tuple[str, str], list[str]] = {}
    for c in collections:
        naming.setdefault(_meta(c), []).append(str(c.get("collection_id")))
    out: list[Finding] = []
    for o in owners:
        if not o.should_have:
            continue
        if not o.collection_id:
            named = [cid for cid in naming.get((o.entity_type.value, o.id), []) if cid]
            why = (f"xAI collection {named[0]} names it (created, but its id was never stored): the check adopts it"
                   if named else "no collection was created (or its id was cleared): the check creates one")
            out.append(Finding(FindingType.ENTITY_WITHOUT_COLLECTION, o.label, "its rule wants an xAI collection, but xaiCollectionId is empty.",
                               why, "no-id", o.ref, {"xaiCollectionId": None, "named_by": named}, _ensure(o.entity_type, o.id, "no collection")))
        elif collections_complete and o.collection_id not in xai_ids:
            out.append(Finding(
                FindingType.ENTITY_WITHOUT_COLLECTION, o.label, f"it stores xaiCollectionId {o.collection_id}, which xAI does not have.",
                "the collection was deleted in xAI: the check creates a new one and the documents are added to it",
                f"gone:{o.collection_id}", o.ref, {"xaiCollectionId": o.collection_id}, _ensure(o.entity_type, o.id, "collection gone")))
    for c in collections:
        cid = str(c.get("collection_id") or "")
        etype, eid = _meta(c)
        subject = f"xAI collection {cid} \"{c.get('collection_name') or ''}\""
        details = {"collection_id": cid, "metadata": dict(c.get("metadata") or {})}
        if not etype or not eid:
            out.append(Finding(FindingType.COLLECTION_WITHOUT_OWNER, subject, "its metadata names no EspoCRM entity.",
                               "it was not created by this project (the collection manager always writes espocrm_entity_type/id)",
                               f"nometa:{cid}", None, details,
                               hint="check it in xAI; delete it there by hand if nobody uses it (its files stay)"))
            continue
        try:
            owner_type = EntityType(etype)
        except ValueError:
            owner_type = None
        if owner_type is None or owner_type not in LINKABLE_ENTITY_TYPES:
            out.append(Finding(FindingType.COLLECTION_WITHOUT_OWNER, subject, f"its metadata names {etype} {eid}, a type that owns no collections.",
                               "written by something else than this project's collection manager", f"type:{cid}", None, details,
                               hint="check it in xAI; delete it there by hand if nobody uses it (its files stay)"))
            continue
        ref = ref_for_espocrm(owner_type.value, eid)
        owner = by_key.get((etype, eid))
        if owner is None:
            if owner_type in complete:
                out.append(Finding(
                    FindingType.COLLECTION_WITHOUT_OWNER, subject, f"its owner {etype} {eid} is not in EspoCRM's list.",
                    "the entity was deleted and its delete never reached the collection manager",
                    f"gone:{cid}", ref, details,
                    Repair(RepairAction.RESYNC, f"queue the collection check of {etype} {eid}: when EspoCRM answers 404 for it, "
                           "the collections naming it are deleted (their files stay)",
                           (collection_event(owner_type, eid, action=EntityAction.DELETE, source=SOURCE, reason="ops audit: owner gone"),))))
            continue
        if owner.collection_id == cid:
            continue
        if owner.collection_id:
            out.append(Finding(FindingType.COLLECTION_WITHOUT_OWNER, subject, f"{owner.label} keeps another collection, {owner.collection_id}.",
                               "a second collection for the same entity (created by hand, or before an id was stored)",
                               f"other:{cid}", ref, {**details, "owner_keeps": owner.collection_id},
                               hint=f"compare its files with {owner.collection_id}; delete the one not used in xAI by hand (files stay)"))
        elif not owner.should_have:
            out.append(Finding(FindingType.COLLECTION_WITHOUT_OWNER, subject, f"{owner.label} stores no collection and its rule wants none.",
                               "the entity's rule field changed after the collection was created, or the id was cleared by hand",
                               f"unwanted:{cid}", ref, details,
                               hint="delete it in xAI by hand if its documents need not be searchable any more (files stay)"))
    return out


def _file_id(xai_doc: Mapping[str, Any]) -> str:
    meta = xai_doc.get("file_metadata") or {}
    return str((meta.get("file_id") if isinstance(meta, Mapping) else None) or xai_doc.get("file_id") or "")


def _doc_field(xai_doc: Mapping[str, Any]) -> str:
    fields = xai_doc.get("fields") or {}
    return str((fields.get(DOCUMENT_FIELD_ID) if isinstance(fields, Mapping) else None) or "")


def _doc_label(doc_id: str, record: Mapping[str, Any] | None) -> str:
    name = (record or {}).get("name")
    return f"document {doc_id}" + (f" \"{name}\"" if name else "")


def _is_clean(doc: Mapping[str, Any]) -> bool:
    return bool(doc.get("xaiSyncStatus") == XAISyncStatus.CLEAN.value and doc.get("fileId") and doc.get("xaiId"))


def _recorded(doc: Mapping[str, Any]) -> list[str]:
    value = doc.get("xaiCollections")
    return [str(v) for v in value] if isinstance(value, list) else []


def membership_findings(owner: Owner, collection_id: str, linked_docs: Iterable[Mapping[str, Any]],
                        xai_docs: Iterable[Mapping[str, Any]]) -> tuple[list[Finding], list[Mapping[str, Any]]]:
    """DOCUMENT_NOT_IN_COLLECTION findings and the strays (xAI documents whose EspoCRM document
    is not linked to the owner) for `stray_findings`; a linked clean document holding another
    file there is reported as an older version."""
    linked = {str(d.get("id")): d for d in linked_docs if d.get("id")}
    xai_docs = list(xai_docs)
    files = {_file_id(x) for x in xai_docs}
    out: list[Finding] = []
    for doc_id, doc in linked.items():
        if not _is_clean(doc) or str(doc["xaiId"]) in files:
            continue
        recorded = _recorded(doc)
        says = f"its record lists {recorded}" if recorded else "its record lists no collection"
        out.append(Finding(
            FindingType.DOCUMENT_NOT_IN_COLLECTION, _doc_label(doc_id, doc),
            f"EspoCRM marks it clean, but xAI collection {collection_id} of {owner.label} lacks its file {doc['xaiId']}.",
            f"searches in {owner.entity_type.value} {owner.id} cannot find it; {says}, so the sync believes it is there "
            "(the file was removed in xAI, or an add failed unnoticed)",
            f"{collection_id}:{doc['xaiId']}", EntityRef(OpsEntityType.DOCUMENT, doc_id),
            {"collection_id": collection_id, "owner": owner.ref.as_json(), "xaiId": doc["xaiId"], "xaiCollections": recorded,
             "in_xai": sorted(files)[:20]},
            _record_and_resync(doc_id, f"drop {collection_id} from the document's xaiCollections, then queue its sync, "
                               f"which adds file {doc['xaiId']} again", f"not in {collection_id}",
                               remove=[collection_id] if collection_id in recorded else [])))
    strays: list[Mapping[str, Any]] = []
    for x in xai_docs:
        doc_id = _doc_field(x)
        mine = linked.get(doc_id)
        if mine is None:
            strays.append(x)
        elif _is_clean(mine) and _file_id(x) != str(mine["xaiId"]):
            out.append(_older_version(owner, collection_id, doc_id, mine, _file_id(x)))
    return out, strays


def _older_version(owner: Owner, collection_id: str, doc_id: str, doc: Mapping[str, Any], file_id: str) -> Finding:
    return Finding(
        FindingType.FILE_WITHOUT_DOCUMENT, _doc_label(doc_id, doc),
        f"xAI collection {collection_id} of {owner.label} holds file {file_id}, an older version: the document's file is {doc.get('xaiId')}.",
        "a new version was uploaded and the old one's removal from this collection did not happen; searches may find outdated text",
        f"{collection_id}:{file_id}", EntityRef(OpsEntityType.DOCUMENT, doc_id),
        {"collection_id": collection_id, "file_id": file_id, "xaiId": doc.get("xaiId"), "owner": owner.ref.as_json()},
        hint=f"remove file {file_id} from collection {collection_id} in xAI (the file stays)")


def stray_ids(strays: Iterable[Mapping[str, Any]]) -> list[str]:
    """The EspoCRM document ids the strays name (to look up)."""
    return sorted({i for i in (_doc_field(x) for x in strays) if i})


def stray_findings(owner: Owner, collection_id: str, strays: Iterable[Mapping[str, Any]],
                   documents: Mapping[str, Mapping[str, Any] | None]) -> list[Finding]:
    """FILE_WITHOUT_DOCUMENT for each stray; `documents` maps a looked-up id to its record, or
    None when EspoCRM does not list it (ids not looked up are left out: budget)."""
    out: list[Finding] = []
    for x in strays:
        doc_id, file_id = _doc_field(x), _file_id(x)
        details: dict[str, Any] = {"collection_id": collection_id, "file_id": file_id, "owner": owner.ref.as_json()}
        if not doc_id:
            out.append(Finding(FindingType.FILE_WITHOUT_DOCUMENT, f"file {file_id}",
                               f"xAI collection {collection_id} of {owner.label} holds it without an {DOCUMENT_FIELD_ID} field.",
                               "added by hand or by another tool, not by the document sync", f"{collection_id}:{file_id}", None, details,
                               hint=f"remove it from collection {collection_id} in xAI if it does not belong there (the file stays)"))
            continue
        if doc_id not in documents:
            continue
        found = documents[doc_id]
        ref = EntityRef(OpsEntityType.DOCUMENT, doc_id)
        if found is None:
            out.append(Finding(
                FindingType.FILE_WITHOUT_DOCUMENT, _doc_label(doc_id, None),
                f"xAI collection {collection_id} of {owner.label} holds its file {file_id}, but EspoCRM does not list the document.",
                "the document was deleted and its delete never reached the sync", f"{collection_id}:{file_id}", ref, details,
                Repair(RepairAction.RESYNC, f"queue the document's delete with collection {collection_id}: once EspoCRM confirms it "
                       "(404, not in its list) the file leaves the collection (the file stays)",
                       (document_event(doc_id, EntityAction.DELETE, source=SOURCE, reason="ops audit: document gone",
                                       xaiCollections=[collection_id]),))))
        elif file_id == str(found.get("xaiId") or ""):
            recorded = _recorded(found)
            out.append(Finding(
                FindingType.FILE_WITHOUT_DOCUMENT, _doc_label(doc_id, found),
                f"xAI collection {collection_id} holds its file {file_id}, but the document is not linked to {owner.label}.",
                "it was unlinked and the sync did not take it out (a lost webhook, or its record did not list the collection)",
                f"{collection_id}:{file_id}", ref, {**details, "xaiCollections": recorded},
                _record_and_resync(doc_id, f"add {collection_id} to the document's xaiCollections, then queue its sync, "
                                   "which removes the file from it", f"unlinked from {collection_id}",
                                   add=[] if collection_id in recorded else [collection_id])))
        else:
            out.append(_older_version(owner, collection_id, doc_id, found, file_id))
    return out


__all__ = ["Owner", "membership_findings", "ownership_findings", "stray_findings", "stray_ids"]
