"""The drift audit's collection and membership rules (services.ops.audit.collections), without I/O:
one test per finding type and its cases, each checking the repair queues only ledger work."""

from __future__ import annotations

from typing import Any

from services.ops.audit.collections import Owner, membership_findings, ownership_findings, stray_findings, stray_ids
from services.ops.audit.model import FindingType, RepairAction
from services.ops.entities import OpsEntityType
from services.platform.models import EntityType

RK = EntityType.RAEUMUNGSKLAGE


def owner(eid: str = "rk1", cid: str | None = "col-1", should: bool = True) -> Owner:
    return Owner(RK, eid, f"RK {eid}", cid, should)


def collection(cid: str, etype: str | None = "Raeumungsklage", eid: str | None = "rk1") -> dict[str, Any]:
    meta = {"espocrm_entity_type": etype, "espocrm_entity_id": eid} if etype else {}
    return {"collection_id": cid, "collection_name": f"name {cid}", "metadata": meta}


def doc(did: str, xai_id: str | None = "file-1", status: str = "clean", collections: list[str] | None = None) -> dict[str, Any]:
    return {"id": did, "name": f"{did}.pdf", "fileId": "att-" + did, "xaiId": xai_id, "xaiSyncStatus": status,
            "xaiCollections": ["col-1"] if collections is None else collections}


def xdoc(file_id: str, doc_id: str | None) -> dict[str, Any]:
    return {"file_metadata": {"file_id": file_id}, "fields": {"espocrm_document_id": doc_id} if doc_id else {}}


def types(found: list[Any]) -> list[str]:
    return [f.type.value for f in found]


# --------------------------------------------------------------------------- ENTITY_WITHOUT_COLLECTION


def test_entity_whose_rule_wants_a_collection_without_an_id_is_found_and_the_check_queued() -> None:
    found = ownership_findings([owner(cid=None)], [], complete_types=[RK], collections_complete=True)
    assert types(found) == ["entity_without_collection"]
    f = found[0]
    assert f.entity and f.entity.type is OpsEntityType.EVICTION_CASE and f.entity.id == "rk1"
    assert f.repair and f.repair.action is RepairAction.RESYNC and f.repair.record is None
    assert [e["topic"] for e in f.repair.events] == ["vmh.collection.ensure"]
    assert f.repair.events[0]["data"]["entity_id"] == "rk1" and f.repair.events[0]["data"]["source"] == "manual"


def test_entity_whose_stored_collection_is_gone_from_xai_is_found_only_from_a_complete_list() -> None:
    gone = ownership_findings([owner(cid="col-9")], [collection("col-1", eid="other")], complete_types=[RK], collections_complete=True)
    assert "entity_without_collection" in types(gone)
    assert next(f for f in gone if f.type is FindingType.ENTITY_WITHOUT_COLLECTION).details["xaiCollectionId"] == "col-9"
    cut = ownership_findings([owner(cid="col-9")], [collection("col-1", eid="other")], complete_types=[RK], collections_complete=False)
    assert "entity_without_collection" not in types(cut)


def test_a_collection_naming_an_entity_without_id_is_offered_for_adoption_not_reported_twice() -> None:
    found = ownership_findings([owner(cid=None)], [collection("col-7")], complete_types=[RK], collections_complete=True)
    assert types(found) == ["entity_without_collection"]
    assert found[0].details["named_by"] == ["col-7"] and "adopts" in found[0].why


def test_entities_whose_rule_wants_none_and_owned_collections_are_fine() -> None:
    assert ownership_findings([owner(cid=None, should=False), owner("rk2", cid="col-2")], [collection("col-2", eid="rk2")],
                              complete_types=[RK], collections_complete=True) == []


# --------------------------------------------------------------------------- COLLECTION_WITHOUT_OWNER


def test_collection_whose_owner_is_not_listed_is_repaired_by_the_owners_collection_check() -> None:
    found = ownership_findings([owner("rk2", cid="col-2")], [collection("col-2", eid="rk2"), collection("col-5", eid="rk-gone")],
                               complete_types=[RK], collections_complete=True)
    assert types(found) == ["collection_without_owner"]
    f = found[0]
    assert f.entity and f.entity.id == "rk-gone" and f.details["collection_id"] == "col-5"
    assert f.repair and f.repair.events[0]["topic"] == "vmh.collection.ensure" and f.repair.events[0]["data"]["entity_id"] == "rk-gone"
    assert "files stay" in f.repair.description


def test_owner_gone_is_not_concluded_from_an_incomplete_entity_list() -> None:
    assert ownership_findings([], [collection("col-5", eid="rk-gone")], complete_types=[], collections_complete=True) == []


def test_collection_without_metadata_or_of_a_foreign_type_is_for_an_operator() -> None:
    found = ownership_findings([], [collection("col-x", etype=None), collection("col-y", etype="Contact", eid="c1")],
                               complete_types=[RK], collections_complete=True)
    assert types(found) == ["collection_without_owner", "collection_without_owner"]
    assert all(f.repair is None and f.hint and f.entity is None for f in found)


def test_second_collection_of_an_entity_and_an_unwanted_one_are_for_an_operator() -> None:
    found = ownership_findings([owner("rk1", cid="col-1"), owner("rk3", cid=None, should=False)],
                               [collection("col-1"), collection("col-dup"), collection("col-3", eid="rk3")],
                               complete_types=[RK], collections_complete=True)
    assert sorted(f.details["collection_id"] for f in found) == ["col-3", "col-dup"]
    assert all(f.type is FindingType.COLLECTION_WITHOUT_OWNER and f.repair is None and f.hint for f in found)
    dup = next(f for f in found if f.details["collection_id"] == "col-dup")
    assert dup.details["owner_keeps"] == "col-1"


# --------------------------------------------------------------------------- DOCUMENT_NOT_IN_COLLECTION


def test_clean_document_whose_file_the_collection_lacks_is_found_and_its_record_corrected_first() -> None:
    found, strays = membership_findings(owner(), "col-1", [doc("d1"), doc("d2", "file-2")], [xdoc("file-2", "d2")])
    assert strays == [] and types(found) == ["document_not_in_collection"]
    f = found[0]
    assert f.entity and f.entity.type is OpsEntityType.DOCUMENT and f.entity.id == "d1"
    assert f.repair and f.repair.action is RepairAction.RECORD_AND_RESYNC
    assert f.repair.record == {"entity_type": "CDokumente", "entity_id": "d1", "field": "xaiCollections", "add": [], "remove": ["col-1"]}
    assert [e["topic"] for e in f.repair.events] == ["vmh.document.update"]


def test_documents_not_clean_or_without_a_file_are_left_to_the_sync() -> None:
    found, _ = membership_findings(owner(), "col-1", [doc("d1", status="pending_sync"), doc("d2", status="failed"),
                                                      doc("d3", xai_id=None)], [])
    assert found == []


def test_clean_document_not_recorded_in_the_collection_is_queued_without_a_record_change() -> None:
    found, _ = membership_findings(owner(), "col-1", [doc("d1", collections=[])], [])
    assert found[0].repair and found[0].repair.record and found[0].repair.record["remove"] == []


# --------------------------------------------------------------------------- FILE_WITHOUT_DOCUMENT


def test_file_of_a_deleted_document_is_removed_through_its_delete_event() -> None:
    _, strays = membership_findings(owner(), "col-1", [], [xdoc("file-9", "gone1")])
    assert stray_ids(strays) == ["gone1"]
    found = stray_findings(owner(), "col-1", strays, {"gone1": None})
    assert types(found) == ["file_without_document"]
    event = found[0].repair.events[0] if found[0].repair else {}
    assert event["topic"] == "vmh.document.delete" and event["data"]["xaiCollections"] == ["col-1"]
    assert found[0].repair and found[0].repair.record is None


def test_file_of_an_unlinked_document_is_added_to_its_record_and_its_sync_queued() -> None:
    _, strays = membership_findings(owner(), "col-1", [], [xdoc("file-4", "d4")])
    found = stray_findings(owner(), "col-1", strays, {"d4": doc("d4", "file-4", collections=["col-2"])})
    assert types(found) == ["file_without_document"]
    r = found[0].repair
    assert r and r.action is RepairAction.RECORD_AND_RESYNC and r.record and r.record["add"] == ["col-1"]
    assert r.record == {"entity_type": "CDokumente", "entity_id": "d4", "field": "xaiCollections", "add": ["col-1"], "remove": []}
    assert r.events[0]["topic"] == "vmh.document.update"


def test_older_versions_and_foreign_files_are_for_an_operator_and_unread_ids_are_left_out() -> None:
    found, strays = membership_findings(owner(), "col-1", [doc("d1", "file-new")], [xdoc("file-new", "d1"), xdoc("file-old", "d1"),
                                                                                    xdoc("file-x", None), xdoc("file-y", "d9")])
    assert types(found) == ["file_without_document"] and found[0].details["file_id"] == "file-old" and found[0].repair is None
    rest = stray_findings(owner(), "col-1", strays, {})  # d9 not looked up (budget): left out
    assert types(rest) == ["file_without_document"] and rest[0].entity is None and rest[0].hint


def test_finding_ids_are_stable_and_differ_per_disagreement() -> None:
    a, _ = membership_findings(owner(), "col-1", [doc("d1")], [])
    b, _ = membership_findings(owner(), "col-1", [doc("d1")], [])
    c, _ = membership_findings(owner(), "col-2", [doc("d1")], [])
    assert a[0].id == b[0].id != c[0].id
