"""XAIAPI against the xAI simulator: files, collections, documents, search, retries."""

from __future__ import annotations

import asyncio
import hashlib
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.clients.errors import ApiError, AuthError, ConfigError, ValidationError
from services.clients.retry import RetryPolicy
from services.clients.xai import XAIAPI, XAIDocumentStatus, document_status
from simulators.runner import RunningApp, start_app
from simulators.xai import create_app
from tests.sim_admin import request_statuses, sim_admin

API_KEY = "xai-test-key"
MGMT_KEY = "xai-token-mgmt"
FAST = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05, max_total=10, jitter=False)


@pytest.fixture
async def sim() -> AsyncIterator[RunningApp]:
    running = await start_app(create_app(API_KEY, MGMT_KEY, processing_delay=0, max_file_bytes=8 * 1024 * 1024))
    yield running
    await running.stop()


@pytest.fixture
async def xai(sim: RunningApp) -> AsyncIterator[XAIAPI]:
    service = XAIAPI(sim.url, sim.url, API_KEY, MGMT_KEY, timeout=10, retry_policy=FAST, page_size=2)
    yield service
    await service.close()


admin = sim_admin


async def posts_to(sim: RunningApp, path_re: str, method: str = "POST") -> list[int]:
    return await request_statuses(sim, path_re, method)


async def test_upload_bytes_path_and_iterator(xai: XAIAPI, tmp_path: Path) -> None:
    fid = await xai.upload_file("a.txt", b"Inhalt A", "text/plain")
    assert fid.startswith("file-")
    info = await xai.get_file(fid)
    assert info is not None and info["filename"] == "a.txt" and info["bytes"] == 8
    assert b"".join([c async for c in xai.iter_file_content(fid)]) == b"Inhalt A"

    path = tmp_path / "b.pdf"
    path.write_bytes(b"%PDF-1.4 " + b"x" * 200_000)
    fid_b = await xai.upload_file("b.pdf", path, "application/pdf")
    assert b"".join([c async for c in xai.iter_file_content(fid_b)]) == path.read_bytes()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"Teil {i};".encode()

    fid_c = await xai.upload_file(file_content=chunks(), filename="c.txt", mime_type="text/plain")
    assert b"".join([c async for c in xai.iter_file_content(fid_c)]) == b"Teil 0;Teil 1;Teil 2;"

    assert await xai.file_exists(fid)
    assert not await xai.file_exists("file-missing")
    assert await xai.get_file("file-missing") is None
    assert sorted([f["id"] async for f in xai.list_files()]) == sorted([fid, fid_b, fid_c])
    assert await xai.delete_file(fid) is True
    assert await xai.delete_file(fid) is False
    assert not await xai.file_exists(fid)


async def test_upload_5mb_with_bounded_memory(xai: XAIAPI) -> None:
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
    count = 80  # 5 MiB

    async def body() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield block

    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fid = await xai.upload_file("big.bin", body(), "application/octet-stream")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    info = await xai.get_file(fid)
    assert info is not None and info["bytes"] == len(block) * count
    assert peak - base < 4 * 1024 * 1024, f"upload used {peak - base} bytes"


async def test_upload_size_limits(sim: RunningApp) -> None:
    small = XAIAPI(sim.url, sim.url, API_KEY, MGMT_KEY, retry_policy=FAST, max_file_bytes=1000)
    try:
        with pytest.raises(ValidationError):
            await small.upload_file("x.bin", b"x" * 1001)

        async def body() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"y" * 500

        with pytest.raises(ValidationError):
            await small.upload_file("y.bin", body())
    finally:
        await small.close()
    # The server's own limit is a permanent error, not retried.
    running = await start_app(create_app(API_KEY, MGMT_KEY, max_file_bytes=1000))
    service = XAIAPI(running.url, running.url, API_KEY, MGMT_KEY, retry_policy=FAST)
    try:
        with pytest.raises(ApiError) as err:
            await service.upload_file("x.bin", b"x" * 1001)
        assert err.value.status == 413 and not err.value.retryable
        assert await posts_to(running, "^/v1/files$") == [413]
    finally:
        await service.close()
        await running.stop()


async def test_wrong_keys_raise_auth_error(sim: RunningApp) -> None:
    bad = XAIAPI(sim.url, sim.url, "wrong", "also-wrong", retry_policy=FAST)
    try:
        with pytest.raises(AuthError):
            await bad.upload_file("a.txt", b"x")
        with pytest.raises(AuthError):
            await bad.create_collection("c", {})
        with pytest.raises(AuthError):
            await bad.search("x", ["collection_x"])
    finally:
        await bad.close()
    with pytest.raises(ConfigError):
        XAIAPI(sim.url, sim.url, "", MGMT_KEY)


async def test_collections_crud_paging_and_metadata_lookup(xai: XAIAPI, sim: RunningApp) -> None:
    created = []
    for i in range(5):
        col = await xai.create_collection(
            f"CBeteiligte - Person {i}",
            {"espocrm_entity_type": "CBeteiligte", "espocrm_entity_id": f"id{i % 3}"},
            description="Akte",
        )
        created.append(col["collection_id"])
        assert col["metadata"]["espocrm_entity_id"] == f"id{i % 3}"
    listed = [c["collection_id"] async for c in xai.list_collections()]
    assert listed == created
    # page_size=2 → three GETs for five collections
    assert len(await posts_to(sim, "^/v1/collections$", "GET")) == 3

    found = await xai.find_collections_by_metadata("espocrm_entity_id", "id1")
    assert [c["collection_id"] for c in found] == [created[1], created[4]]
    assert await xai.find_collections_by_metadata("espocrm_entity_id", "id9") == []

    col = await xai.get_collection(created[0])
    assert col is not None and col["collection_name"] == "CBeteiligte - Person 0"
    updated = await xai.update_collection(created[0], name="Umbenannt", metadata={"a": "b"})
    assert updated["collection_name"] == "Umbenannt" and updated["metadata"] == {"a": "b"}
    assert await xai.delete_collection(created[0]) is True
    assert await xai.delete_collection(created[0]) is False
    assert await xai.get_collection(created[0]) is None


async def test_documents_are_idempotent(xai: XAIAPI) -> None:
    fid = await xai.upload_file("d.txt", b"Dokument", "text/plain")
    c1 = (await xai.create_collection("eins", {}))["collection_id"]
    c2 = (await xai.create_collection("zwei", {}))["collection_id"]

    assert await xai.add_to_collection(c1, fid, {"espocrm_document_id": "doc1"}) is True
    assert await xai.add_to_collection(c1, fid) is False  # already there: success
    added = await xai.add_to_collections([c1, c2, "collection_gone"], fid)
    assert added == [c1, c2]

    doc = await xai.get_document(c1, fid)
    assert doc is not None
    assert doc["fields"] == {"espocrm_document_id": "doc1"}
    assert doc["file_metadata"]["hash"] == hashlib.sha256(b"Dokument").hexdigest()
    assert document_status(doc) is XAIDocumentStatus.PROCESSED
    assert XAIDocumentStatus.parse("DOCUMENT_STATUS_PROCESSING") is XAIDocumentStatus.PROCESSING
    assert [d["file_metadata"]["file_id"] async for d in xai.list_documents(c2)] == [fid]

    assert await xai.remove_from_collection(c1, fid) is True
    assert await xai.remove_from_collection(c1, fid) is False  # missing: success
    assert await xai.get_document(c1, fid) is None
    assert await xai.file_exists(fid)  # removing never deletes the file


async def test_add_to_collections_raises_retryable_after_trying_all(xai: XAIAPI, sim: RunningApp) -> None:
    fid = await xai.upload_file("d.txt", b"Dokument", "text/plain")
    c1 = (await xai.create_collection("eins", {}))["collection_id"]
    c2 = (await xai.create_collection("zwei", {}))["collection_id"]
    await admin(sim, "POST", "faults", json={"path": f"/v1/collections/{c1}/documents/", "status": 503})
    with pytest.raises(ApiError) as err:
        await xai.add_to_collections([c1, c2], fid)
    assert err.value.status == 503
    assert await xai.get_document(c2, fid) is not None  # c2 was still tried
    await admin(sim, "DELETE", "faults")
    assert await xai.add_to_collections([c1, c2], fid) == [c1, c2]


async def test_search(xai: XAIAPI) -> None:
    fid = await xai.upload_file("m.txt", "Räumungsklage gegen Mieter Schulz".encode(), "text/plain")
    cid = (await xai.create_collection("suche", {}))["collection_id"]
    await xai.add_to_collection(cid, fid)
    matches = await xai.search("räumungsklage", [cid], limit=3)
    assert len(matches) == 1 and matches[0]["file_id"] == fid and matches[0]["score"] == 1.0
    assert await xai.search("Vollstreckung", [cid]) == []


async def test_retries_injected_500_on_upload(xai: XAIAPI, sim: RunningApp) -> None:
    await admin(sim, "POST", "faults", json={"path": "^/v1/files$", "method": "POST", "status": 500, "times": 2})
    fid = await xai.upload_file("r.txt", b"retry me", "text/plain")
    assert b"".join([c async for c in xai.iter_file_content(fid)]) == b"retry me"
    assert await posts_to(sim, "^/v1/files$") == [500, 500, 200]


async def test_429_honours_retry_after(xai: XAIAPI, sim: RunningApp) -> None:
    cid = (await xai.create_collection("rl", {}))["collection_id"]
    await admin(sim, "POST", "faults", json={"path": "^/v1/collections/", "method": "GET", "status": 429, "retry_after": 0.3, "times": 1})
    started = time.monotonic()
    col = await xai.get_collection(cid)
    elapsed = time.monotonic() - started
    assert col is not None
    assert elapsed >= 0.29, "Retry-After (0.3 s) must win over the 0.01 s backoff"
    assert await posts_to(sim, f"^/v1/collections/{cid}$", "GET") == [429, 200]


async def test_429_is_retried_within_the_time_budget_and_stays_retryable(sim: RunningApp) -> None:
    """A rate limit spends no attempt: more tries than max_attempts, until max_total is spent;
    what is still limited then is raised as the retryable 429, never a permanent failure."""
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, max_total=0.5, jitter=False)
    service = XAIAPI(sim.url, sim.url, API_KEY, MGMT_KEY, retry_policy=policy)
    try:
        await admin(sim, "POST", "faults", json={"path": "^/v1/files$", "method": "POST", "status": 429, "retry_after": 0.1})
        with pytest.raises(ApiError) as err:
            await service.upload_file("x.txt", b"x")
        assert err.value.status == 429 and err.value.retryable
        statuses = await posts_to(sim, "^/v1/files$")
        assert set(statuses) == {429} and len(statuses) > policy.max_attempts
    finally:
        await service.close()


async def test_uploads_under_the_simulated_rate_limit_all_succeed(xai: XAIAPI, sim: RunningApp) -> None:
    """xAI's rate limit as a token bucket, Retry-After on every second 429 only: every upload
    gets through, the 429s were honoured (Retry-After, else backoff), none became a failure."""
    await admin(sim, "PUT", "rate-limit", json={"rate": 20, "burst": 2, "retry_after_share": 0.5, "path": "^/v1/files$"})
    fids = await asyncio.gather(*(xai.upload_file(f"rl-{i}.txt", f"rate {i}".encode(), "text/plain") for i in range(8)))
    assert len(set(fids)) == 8
    statuses = await posts_to(sim, "^/v1/files$")
    assert statuses.count(200) == 8 and statuses.count(429) >= 1
