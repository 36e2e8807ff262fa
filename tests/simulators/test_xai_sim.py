"""The xAI simulator speaks the Files and Collections APIs as external-apis.md §2 says."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulators.runner import RunningApp, start_app
from simulators.xai import create_app
from tests.simulators.http_status import status

API_KEY = "xai-test-key"
MGMT_KEY = "xai-token-mgmt"
API = {"Authorization": f"Bearer {API_KEY}"}
MGMT = {"Authorization": f"Bearer {MGMT_KEY}"}


@pytest.fixture
async def sim() -> AsyncIterator[RunningApp]:
    running = await start_app(create_app(API_KEY, MGMT_KEY, max_file_bytes=8 * 1024 * 1024, processing_delay=0.2))
    yield running
    await running.stop()


async def upload(http: aiohttp.ClientSession, url: str, content: bytes, name: str = "a.txt", ctype: str = "text/plain") -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("purpose", "assistants")
    form.add_field("file", content, filename=name, content_type=ctype)
    async with http.post(f"{url}/v1/files", data=form, headers=API) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_auth_is_per_host(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    for headers in ({}, MGMT, {"Authorization": "Bearer nope"}):
        async with http.get(f"{sim.url}/v1/files", headers=headers) as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["error"]
    for headers in ({}, API):
        assert await status(http.get(f"{sim.url}/v1/collections", headers=headers)) == 401
    assert await status(http.post(f"{sim.url}/v1/documents/search", json={"query": "x"}, headers=MGMT)) == 401
    assert await status(http.get(f"{sim.url}/v1/files", headers=API)) == 200
    assert await status(http.get(f"{sim.url}/v1/collections", headers=MGMT)) == 200


async def test_file_lifecycle(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    content = b"Hallo Welt\n" * 100
    info = await upload(http, sim.url, content, "brief.txt")
    assert info["id"].startswith("file-")
    assert info["filename"] == "brief.txt"
    assert info["bytes"] == len(content)
    assert isinstance(info["created_at"], int)
    assert info["expires_at"] is None
    async with http.get(f"{sim.url}/v1/files/{info['id']}", headers=API) as resp:
        assert (await resp.json())["bytes"] == len(content)
    async with http.get(f"{sim.url}/v1/files/{info['id']}/content", headers=API) as resp:
        assert await resp.read() == content
    async with http.get(f"{sim.url}/v1/files", headers=API) as resp:
        listing = await resp.json()
        assert [f["id"] for f in listing["data"]] == [info["id"]]
        assert listing["pagination_token"] is None
    async with http.delete(f"{sim.url}/v1/files/{info['id']}", headers=API) as resp:
        assert await resp.json() == {"id": info["id"], "object": "file", "deleted": True}
    assert await status(http.get(f"{sim.url}/v1/files/{info['id']}", headers=API)) == 404
    assert await status(http.delete(f"{sim.url}/v1/files/{info['id']}", headers=API)) == 404


async def test_upload_requires_file_part(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    form.add_field("purpose", "assistants")
    form.add_field("other", b"x", filename="x.bin")
    assert await status(http.post(f"{sim.url}/v1/files", data=form, headers=API)) == 400


async def test_upload_too_large_is_413(http: aiohttp.ClientSession) -> None:
    running = await start_app(create_app(API_KEY, MGMT_KEY, max_file_bytes=100_000))
    try:
        form = aiohttp.FormData()
        form.add_field("file", b"x" * 100_001, filename="big.bin")
        assert await status(http.post(f"{running.url}/v1/files", data=form, headers=API)) == 413
        info = await upload(http, running.url, b"x" * 100_000, "ok.bin")
        assert info["bytes"] == 100_000
    finally:
        await running.stop()


async def test_streamed_upload_keeps_memory_bounded(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    size = 5 * 1024 * 1024
    block = bytes(range(256)) * 256  # 64 KiB
    digest = hashlib.sha256(block * (size // len(block))).hexdigest()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        form = aiohttp.FormData()
        form.add_field("file", body(), filename="big.bin", content_type="application/octet-stream")
        async with http.post(f"{sim.url}/v1/files", data=form, headers=API) as resp:
            assert resp.status == 200
            info = await resp.json()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info["bytes"] == size
    assert peak - base < 3 * 1024 * 1024, f"upload used {peak - base} bytes"
    # The stored hash covers the whole stream.
    async with http.post(f"{sim.url}/v1/collections", json={"collection_name": "c"}, headers=MGMT) as resp:
        cid = (await resp.json())["collection_id"]
    assert await status(http.post(f"{sim.url}/v1/collections/{cid}/documents/{info['id']}", json={}, headers=MGMT)) == 200
    async with http.get(f"{sim.url}/v1/collections/{cid}/documents/{info['id']}", headers=MGMT) as resp:
        assert (await resp.json())["file_metadata"]["hash"] == digest


async def test_collections_crud_and_paging(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    ids = []
    for i in range(5):
        async with http.post(
            f"{sim.url}/v1/collections",
            json={"collection_name": f"Akte {i}", "collection_description": "d", "metadata": {"espocrm_entity_id": str(i)}},
            headers=MGMT,
        ) as resp:
            assert resp.status == 200
            col = await resp.json()
            assert col["collection_id"].startswith("collection_")
            assert col["documents_count"] == 0
            assert col["metadata"] == {"espocrm_entity_id": str(i)}
            assert col["created_at"].endswith("Z")
            ids.append(col["collection_id"])
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"limit": "2", **({"pagination_token": token} if token else {})}
        async with http.get(f"{sim.url}/v1/collections", params=params, headers=MGMT) as resp:
            page = await resp.json()
        pages += 1
        assert len(page["collections"]) <= 2
        seen += [c["collection_id"] for c in page["collections"]]
        token = page["pagination_token"]
        if not token:
            break
    assert pages == 3 and seen == ids
    assert await status(http.get(f"{sim.url}/v1/collections", params={"pagination_token": "%%%"}, headers=MGMT)) == 400

    async with http.put(f"{sim.url}/v1/collections/{ids[0]}", json={"collection_name": "Neu", "metadata": {"k": "v"}}, headers=MGMT) as resp:
        col = await resp.json()
        assert col["collection_name"] == "Neu" and col["metadata"] == {"k": "v"}
    assert await status(http.post(f"{sim.url}/v1/collections", json={"collection_name": "x", "metadata": {"n": 1}}, headers=MGMT)) == 400
    assert await status(http.post(f"{sim.url}/v1/collections", json={}, headers=MGMT)) == 400
    assert await status(http.delete(f"{sim.url}/v1/collections/{ids[0]}", headers=MGMT)) == 200
    assert await status(http.get(f"{sim.url}/v1/collections/{ids[0]}", headers=MGMT)) == 404
    assert await status(http.delete(f"{sim.url}/v1/collections/{ids[0]}", headers=MGMT)) == 404


async def test_documents_add_remove_and_status(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    info = await upload(http, sim.url, b"Vertrag", "v.txt")
    async with http.post(f"{sim.url}/v1/collections", json={"collection_name": "c"}, headers=MGMT) as resp:
        cid = (await resp.json())["collection_id"]
    docs = f"{sim.url}/v1/collections/{cid}/documents"
    assert await status(http.post(f"{docs}/file-unknown", json={}, headers=MGMT)) == 404
    assert await status(http.post(f"{sim.url}/v1/collections/collection_nope/documents/{info['id']}", json={}, headers=MGMT)) == 404
    assert await status(http.post(f"{docs}/{info['id']}", json={"fields": {"aktenzeichen": "1/26"}}, headers=MGMT)) == 200
    assert await status(http.post(f"{docs}/{info['id']}", json={}, headers=MGMT)) == 409
    async with http.get(f"{docs}/{info['id']}", headers=MGMT) as resp:
        doc = await resp.json()
    assert doc["status"] == "PROCESSING"
    assert doc["fields"] == {"aktenzeichen": "1/26"}
    assert doc["file_metadata"] == {
        "file_id": info["id"],
        "name": "v.txt",
        "size_bytes": 7,
        "content_type": "text/plain",
        "hash": hashlib.sha256(b"Vertrag").hexdigest(),
        "created_at": doc["file_metadata"]["created_at"],
    }
    async with http.get(f"{sim.url}/v1/collections/{cid}", headers=MGMT) as resp:
        assert (await resp.json())["documents_count"] == 1
    await asyncio.sleep(0.25)
    async with http.get(docs, headers=MGMT) as resp:
        listing = await resp.json()
    assert [d["status"] for d in listing["documents"]] == ["PROCESSED"]
    assert listing["pagination_token"] is None
    assert await status(http.delete(f"{docs}/{info['id']}", headers=MGMT)) == 200
    assert await status(http.delete(f"{docs}/{info['id']}", headers=MGMT)) == 404
    # Removing from the collection keeps the file.
    assert await status(http.get(f"{sim.url}/v1/files/{info['id']}", headers=API)) == 200


async def test_search_matches_processed_documents(http: aiohttp.ClientSession) -> None:
    running = await start_app(create_app(API_KEY, MGMT_KEY, processing_delay=0))
    try:
        a = await upload(http, running.url, "Kündigung des Mietvertrags\n\nZahlung der Miete offen".encode(), "a.txt")
        b = await upload(http, running.url, b"Nichts Relevantes hier", "b.txt")
        cids = []
        for name in ("eins", "zwei"):
            async with http.post(f"{running.url}/v1/collections", json={"collection_name": name}, headers=MGMT) as resp:
                cids.append((await resp.json())["collection_id"])
        for fid in (a["id"], b["id"]):
            assert await status(http.post(f"{running.url}/v1/collections/{cids[0]}/documents/{fid}", json={}, headers=MGMT)) == 200
        search = f"{running.url}/v1/documents/search"
        async with http.post(search, json={"query": "mietvertrags", "source": {"collection_ids": [cids[0]]}, "limit": 5}, headers=API) as resp:
            matches = (await resp.json())["matches"]
        assert len(matches) == 1
        assert matches[0]["file_id"] == a["id"] and matches[0]["collection_id"] == cids[0]
        assert matches[0]["chunk_content"] == "Kündigung des Mietvertrags"
        assert matches[0]["score"] == 1.0
        async with http.post(search, json={"query": "Miete Zahlung Relevantes", "source": {"collection_ids": [cids[0]]}, "limit": 5}, headers=API) as resp:
            matches = (await resp.json())["matches"]
        assert {m["file_id"] for m in matches} == {a["id"], b["id"]}
        assert matches[0]["file_id"] == a["id"]  # two of three words beat one of three
        async with http.post(search, json={"query": "Mietvertrags", "source": {"collection_ids": [cids[1]]}}, headers=API) as resp:
            assert (await resp.json())["matches"] == []
        assert await status(http.post(search, json={"query": "x", "source": {"collection_ids": ["collection_nope"]}}, headers=API)) == 404
        assert await status(http.post(search, json={"source": {"collection_ids": [cids[0]]}}, headers=API)) == 400
    finally:
        await running.stop()


async def test_seed_reset_and_fault_injection(http: aiohttp.ClientSession) -> None:
    seed = {
        "files": [{"id": "file-seeded", "filename": "s.txt", "content": "Seeded text"}],
        "collections": [
            {"collection_id": "collection_seeded", "collection_name": "S", "documents": [{"file_id": "file-seeded"}]}
        ],
    }
    running = await start_app(create_app(API_KEY, MGMT_KEY, seed=seed))
    try:
        async with http.get(f"{running.url}/v1/collections/collection_seeded/documents/file-seeded", headers=MGMT) as resp:
            assert (await resp.json())["status"] == "PROCESSED"
        assert await status(http.post(f"{running.url}/_sim/reset", json={})) == 200
        assert await status(http.get(f"{running.url}/v1/files/file-seeded", headers=API)) == 404
        assert await status(http.post(f"{running.url}/_sim/reset", json={"seed": True})) == 200
        assert await status(http.get(f"{running.url}/v1/files/file-seeded", headers=API)) == 200
        fault = {"path": "^/v1/files$", "method": "POST", "status": 429, "retry_after": 3, "times": 1}
        assert await status(http.post(f"{running.url}/_sim/faults", json=fault)) == 200
        form = aiohttp.FormData()
        form.add_field("file", b"x", filename="x")
        async with http.post(f"{running.url}/v1/files", data=form, headers=API) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "3"
        async with http.get(f"{running.url}/_sim/requests", params={"path": "^/v1/files$", "method": "POST"}) as resp:
            assert [r["status"] for r in await resp.json()] == [429]
    finally:
        await running.stop()
