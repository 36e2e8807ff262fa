"""The document sync's pure decisions (services.documents.plan), as a table of cases.

Hashes follow the firm's guide: `md5sum` is EspoCRM's MD5 of the current file,
`xaiSyncedHash` the MD5 at last sync; a 64-digit `xaiSyncedHash` is a legacy SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.documents.plan import (
    LinkedEntity,
    SyncDecision,
    collections_to_clean,
    content_is_synced,
    is_legacy_hash,
    migrated_hash,
    plan_document_sync,
    reusable_file_candidates,
)
from services.platform.models import DocumentRecord, EntityType

RK, ACC = EntityType.RAEUMUNGSKLAGE, EntityType.ACCOUNT
CONTENT, OTHER = b"the synced bytes", b"a new version"
MD5, SHA = hashlib.md5(CONTENT).hexdigest(), hashlib.sha256(CONTENT).hexdigest()
MD5_NEW, SHA_NEW = hashlib.md5(OTHER).hexdigest(), hashlib.sha256(OTHER).hexdigest()
IN_C1 = [LinkedEntity(RK, "r1", True, "c1"), LinkedEntity(ACC, "a1", False, None)]
IN_C1_C2 = [LinkedEntity(RK, "r1", True, "c1"), LinkedEntity(ACC, "a1", True, "c2")]


def doc(**kw: Any) -> DocumentRecord:
    base: dict[str, Any] = {"id": "d1", "name": "d.txt", "fileId": "att1"}
    return DocumentRecord.model_validate({**base, **kw})


def clean(**kw: Any) -> DocumentRecord:
    """Synced the guide's way: md5sum == xaiSyncedHash, in collection c1."""
    fields: dict[str, Any] = {"fileStatus": "synced", "xaiSyncStatus": "clean", "xaiId": "f1", "md5sum": MD5,
                              "sha256": SHA, "xaiSyncedHash": MD5, "xaiCollections": ["c1"]}
    return doc(**{**fields, **kw})


def legacy(**kw: Any) -> DocumentRecord:
    """Synced before the MD5 rule: xaiSyncedHash holds the SHA-256."""
    return clean(**{"xaiSyncedHash": SHA, **kw})


@dataclass
class Case:
    name: str
    record: DocumentRecord
    linked: list[LinkedEntity]
    decision: SyncDecision
    needs_download: bool = True
    remove_from: list[str] = field(default_factory=list)


CASES = [
    Case("clean, md5sum == xaiSyncedHash, right collections", clean(), IN_C1, SyncDecision.UP_TO_DATE, needs_download=False),
    Case("hashes compared as hex, any case", clean(md5sum=MD5.upper()), IN_C1, SyncDecision.UP_TO_DATE, needs_download=False),
    Case("file replaced, md5sum changed, fileStatus still synced", clean(md5sum=MD5_NEW, sha256=SHA_NEW), IN_C1, SyncDecision.SYNC),
    Case("md5sum changed, sha256 not (EspoCRM keeps only the MD5)", clean(md5sum=MD5_NEW), IN_C1, SyncDecision.SYNC),
    Case("no md5sum: nothing proves the content", clean(md5sum=None), IN_C1, SyncDecision.SYNC),
    Case("no xaiSyncedHash", clean(xaiSyncedHash=None), IN_C1, SyncDecision.SYNC),
    Case("sha256 equal but xaiSyncedHash an MD5 of other bytes", clean(xaiSyncedHash=MD5_NEW), IN_C1, SyncDecision.SYNC),
    Case("fileStatus changed with equal hashes", clean(fileStatus="changed"), IN_C1, SyncDecision.SYNC),
    Case("new document", doc(fileStatus="new"), IN_C1_C2, SyncDecision.SYNC),
    Case("no xaiId", clean(xaiId=None), IN_C1, SyncDecision.SYNC),
    Case("new link: synced content, one more collection", clean(), IN_C1_C2, SyncDecision.SYNC, needs_download=False),
    Case("unlinked: recorded collection no longer required", clean(xaiCollections=["c1", "c9"]), IN_C1, SyncDecision.SYNC,
         needs_download=False, remove_from=["c9"]),
    Case("pending_sync is never up to date", clean(xaiSyncStatus="pending_sync"), IN_C1, SyncDecision.SYNC),
    Case("failed is never up to date", clean(xaiSyncStatus="failed"), IN_C1, SyncDecision.SYNC),
    Case("unclean is never up to date", clean(xaiSyncStatus="unclean"), IN_C1, SyncDecision.SYNC),
    Case("legacy SHA-256 in xaiSyncedHash, sha256 agrees", legacy(), IN_C1, SyncDecision.MIGRATE_HASH),
    Case("legacy, record without sha256", legacy(sha256=None), IN_C1, SyncDecision.MIGRATE_HASH),
    Case("legacy, upper-case hex", legacy(xaiSyncedHash=SHA.upper()), IN_C1, SyncDecision.MIGRATE_HASH),
    Case("legacy, md5sum changed but not sha256: the download decides", legacy(md5sum=MD5_NEW), IN_C1, SyncDecision.MIGRATE_HASH),
    Case("legacy, but the record's sha256 moved on", legacy(sha256=SHA_NEW, md5sum=MD5_NEW), IN_C1, SyncDecision.SYNC),
    Case("legacy, collections differ: a sync (it migrates too)", legacy(), IN_C1_C2, SyncDecision.SYNC),
    Case("legacy, fileStatus changed", legacy(fileStatus="changed"), IN_C1, SyncDecision.SYNC),
    Case("64 characters that are not hex are no legacy hash", legacy(xaiSyncedHash="z" * 64), IN_C1, SyncDecision.SYNC),
    Case("linked entity still without its collection", doc(fileStatus="new"),
         [LinkedEntity(RK, "r1", True, "c1"), LinkedEntity(ACC, "a1", True, None)], SyncDecision.WAIT_FOR_COLLECTIONS),
    Case("no collection-bearing entity: leave xAI", clean(), [LinkedEntity(ACC, "a1", False, "old")], SyncDecision.NO_SYNC,
         remove_from=["c1"]),
    Case("already no_sync with nothing left", doc(xaiSyncStatus="no_sync"), [], SyncDecision.UP_TO_DATE),
    Case("no file attached", doc(fileId=None, fileStatus="new"), [LinkedEntity(RK, "r", True, "c1")], SyncDecision.NO_SYNC),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan(case: Case) -> None:
    plan = plan_document_sync(case.record, case.linked)
    assert plan.decision == case.decision, plan
    if case.decision in (SyncDecision.SYNC, SyncDecision.MIGRATE_HASH):
        assert plan.needs_download == case.needs_download, plan
    assert plan.remove_from == case.remove_from
    if case.decision == SyncDecision.UP_TO_DATE and case.record.xaiSyncStatus == "clean":
        assert content_is_synced(case.record)


def test_plan_required_and_missing() -> None:
    plan = plan_document_sync(clean(), IN_C1_C2)
    assert plan.required == ["c1", "c2"]
    missing = LinkedEntity(ACC, "a1", True, None)
    assert plan_document_sync(doc(fileStatus="new"), [LinkedEntity(RK, "r1", True, "c1"), missing]).missing == [missing]


def test_is_legacy_hash() -> None:
    assert is_legacy_hash(SHA) and is_legacy_hash(f" {SHA.upper()} ")
    assert not is_legacy_hash(MD5) and not is_legacy_hash(None) and not is_legacy_hash("") and not is_legacy_hash("g" * 64)


@pytest.mark.parametrize(
    ("record", "md5", "sha", "journal", "expected"),
    [
        (clean(), MD5, SHA, None, ["f1"]),  # xaiSyncedHash is the bytes' MD5
        (legacy(), MD5, SHA, None, ["f1"]),  # legacy: xaiSyncedHash is their SHA-256
        (clean(), MD5_NEW, SHA_NEW, None, []),
        (clean(), MD5_NEW, SHA_NEW, {"file_id": "f2", "sha256": SHA_NEW}, ["f2"]),  # a legacy journal entry
        (clean(), MD5_NEW, None, {"file_id": "f2", "md5": MD5_NEW, "sha256": SHA_NEW}, ["f2"]),  # SHA-256 unknown
        (clean(), MD5, SHA, {"file_id": "f1", "md5": MD5, "sha256": SHA}, ["f1"]),  # no duplicate
        (clean(), MD5_NEW, SHA_NEW, {"file_id": "f2", "md5": MD5, "sha256": SHA}, []),
    ],
)
def test_reusable_file_candidates(record: DocumentRecord, md5: str, sha: str | None, journal: Any, expected: list[str]) -> None:
    assert reusable_file_candidates(record, md5, sha, journal) == expected


@pytest.mark.parametrize(
    ("record", "journal", "md5", "sha", "expected"),
    [
        (legacy(), {"file_id": "f1", "sha256": SHA, "collections": ["c1"]}, MD5, SHA, True),  # journal agrees
        (legacy(), None, MD5, SHA, True),  # journal lost: the bytes' SHA-256 alone proves it
        (legacy(), {"file_id": "f0", "sha256": SHA_NEW}, MD5, SHA, True),  # the journal names another file
        (legacy(), {"file_id": "f1", "sha256": SHA_NEW}, MD5, SHA, False),  # the journal contradicts
        (legacy(), {"file_id": "f1", "sha256": SHA, "md5": MD5_NEW}, MD5, SHA, False),
        (legacy(), None, MD5_NEW, SHA_NEW, False),  # the EspoCRM file is not what was synced
        (clean(), None, MD5, SHA, False),  # not a legacy record
    ],
)
def test_migrated_hash(record: DocumentRecord, journal: Any, md5: str, sha: str, expected: bool) -> None:
    assert migrated_hash(record, journal, md5, sha) is expected


def test_collections_to_clean_removes_old_versions_everywhere() -> None:
    d = doc(xaiId="old", xaiCollections=["c1", "c2"])
    pairs = collections_to_clean(d, {"file_id": "new", "sha256": SHA, "collections": ["c3"], "previous_file_id": "older"}, "new", ["c1"])
    assert ("c2", "new") in pairs and ("c3", "new") in pairs and ("c1", "new") not in pairs
    for cid in ("c1", "c2", "c3"):
        assert (cid, "old") in pairs and (cid, "older") in pairs


@pytest.mark.parametrize(
    ("record", "linked", "journal", "decision"),
    [
        (clean(), IN_C1, {"file_id": "f1", "collections": ["c1"]}, SyncDecision.UP_TO_DATE),  # the journal agrees
        (clean(), IN_C1, None, SyncDecision.UP_TO_DATE),  # nothing written down: EspoCRM's record decides
        (clean(), IN_C1, {"file_id": "f1", "collections": ["c1", "c2"]}, SyncDecision.SYNC),  # stopped after adding to c2
        (clean(), IN_C1, {"collections": ["c1", "c2"]}, SyncDecision.SYNC),  # written ahead without a file id
        (clean(), IN_C1, {"file_id": "f2", "collections": ["c1"]}, SyncDecision.SYNC),  # another file in c1
        (clean(), IN_C1, {"file_id": "f2", "collections": []}, SyncDecision.UP_TO_DATE),  # an upload in no collection
        (doc(xaiSyncStatus="no_sync"), [], {"file_id": "f1", "collections": ["c1"]}, SyncDecision.NO_SYNC),
        (doc(xaiSyncStatus="no_sync"), [], {"file_id": "f1", "collections": []}, SyncDecision.UP_TO_DATE),
    ],
)
def test_never_up_to_date_while_the_journal_is_ahead_of_espocrm(
    record: DocumentRecord, linked: list[LinkedEntity], journal: Any, decision: SyncDecision
) -> None:
    """What `pending_sync` written before the work used to tell: a run stopped between xAI and
    its write-back (services.documents.plan.xai_ahead)."""
    plan = plan_document_sync(record, linked, journal)
    assert plan.decision == decision, plan
    if decision == SyncDecision.SYNC:
        assert not plan.needs_download and plan.required == ["c1"]  # the content is synced: no download
