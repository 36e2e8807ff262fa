"""End to end, the guide's hash rule: EspoCRM simulator → webhooks / reconciler → document sync
→ xAI simulator. `xaiSyncedHash` is the MD5 at last sync; a file replaced while `fileStatus`
stays `synced` is synced through its update webhook; a record from before the MD5 rule is
migrated by the reconciler without an upload."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from iii_local.testing import MotiaTester
from services.clients.espocrm import EspoCRMAPI
from tests.steps import test_document_sync as documents
from tests.steps.ledger_helpers import trigger_cron_once
from tests.steps.test_document_sync import DOC, Xai, new_rk, settle, synced_document, wait_until

pytestmark = pytest.mark.timeout(120)
espo, xai = documents.espo, documents.xai  # the document tests' fixtures
JOURNAL = "document_sync.xai"


async def doc_with(espo: EspoCRMAPI, doc_id: str, **fields: Any) -> dict[str, Any]:
    async def check() -> Any:
        d = await espo.get_entity(DOC, doc_id)
        return d if all(d.get(k) == v for k, v in fields.items()) else None

    return await wait_until(check, 40, f"document {doc_id} with {fields}")  # type: ignore[no-any-return]


async def test_file_replaced_while_file_status_stays_synced_is_synced(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai) -> None:
    """Only `md5sum` tells of the new file (`fileStatus` stays synced, `sha256` stale)."""
    rk = await new_rk(espo)
    doc, filename, first = await synced_document(stack, espo, b"version one", raeumungsklagenIds=[rk["id"]])
    assert first["xaiSyncedHash"] == first["md5sum"] == hashlib.md5(b"version one").hexdigest()
    att = await espo.upload_attachment(filename, b"version two", "text/plain", DOC, "file")
    await espo.update_entity(DOC, doc["id"], {"fileId": att["id"], "fileStatus": "synced", "sha256": first["sha256"]})
    new_md5 = hashlib.md5(b"version two").hexdigest()
    second = await doc_with(espo, doc["id"], xaiSyncedHash=new_md5, xaiSyncStatus="clean")
    await settle(stack)
    assert second["md5sum"] == new_md5 and second["xaiId"] != first["xaiId"]
    assert len(await xai.files_named(filename)) == 2  # the new version once
    assert await xai.documents(first["xaiCollections"][0]) == [second["xaiId"]]


async def test_legacy_record_is_migrated_by_the_reconciler_without_upload(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai) -> None:
    rk = await new_rk(espo)
    doc, filename, first = await synced_document(stack, espo, b"synced before the MD5 rule", raeumungsklagenIds=[rk["id"]])
    # As the sync left it before: xaiSyncedHash = SHA-256, a journal entry without md5.
    entry = await stack.state_get(JOURNAL, doc["id"])
    entry.pop("md5")
    await stack.state_set(JOURNAL, doc["id"], entry)
    await espo.update_entity(DOC, doc["id"], {"xaiSyncedHash": first["sha256"]})
    await settle(stack)  # its webhook only reports our own field: ignored
    assert (await espo.get_entity(DOC, doc["id"]))["xaiSyncedHash"] == first["sha256"]
    jobs = (await stack.console("GET", "/_console/cron"))["jobs"]
    fid = next(j["function_id"] for j in jobs if "Document Sync Reconciler" in j["function_id"])
    assert (await trigger_cron_once(stack, fid, "document_sync_cron"))["result"] == "ok"
    d = await doc_with(espo, doc["id"], xaiSyncedHash=first["md5sum"])
    await settle(stack)
    assert d["xaiSyncStatus"] == "clean" and d["xaiId"] == first["xaiId"] and d["xaiCollections"] == first["xaiCollections"]
    assert len(await xai.files_named(filename)) == 1  # not uploaded again
    assert (await stack.state_get(JOURNAL, doc["id"]))["md5"] == first["md5sum"]
