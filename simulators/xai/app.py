"""xAI simulator: the aiohttp app (Files API, Collections management API, search, streamed uploads)."""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.base import make_seeded_app
from simulators.xai.state import (
    CHUNK,
    DEFAULT_PAGE,
    MAX_INDEXED_CHARS,
    MAX_PAGE,
    SPOOL_IN_MEMORY,
    STATE,
    Collection,
    DocumentStatus,
    StoredFile,
    XaiState,
    new_file_id,
)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "error": message}, status=status)


def _not_found(what: str) -> web.Response:
    return _error(404, "NotFound", f"{what} not found")


class _BadRequest(web.HTTPBadRequest):
    """xAI's 400 (`InvalidArgument`); the request checks raise it, aiohttp answers it (and the
    fault middleware logs it) like a returned response."""

    def __init__(self, message: str) -> None:
        super().__init__(text=json.dumps({"code": "InvalidArgument", "error": message}), content_type="application/json")


def _required_text(value: Any, message: str) -> str:
    """`value` when it is a string that is not blank, else a 400 with `message`."""
    if not isinstance(value, str) or not value.strip():
        raise _BadRequest(message)
    return value


def _page(items: list[Any], request: web.Request) -> tuple[list[Any], str | None]:
    """Slice `items` by `limit`/`pagination_token`; the token is an opaque offset."""
    try:
        limit = int(request.query.get("limit", DEFAULT_PAGE))
    except ValueError:
        raise _BadRequest("limit must be an integer") from None
    if limit <= 0:
        limit = DEFAULT_PAGE
    limit = min(limit, MAX_PAGE)
    token = request.query.get("pagination_token") or ""
    offset = 0
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("o:"))
        except (ValueError, UnicodeDecodeError):
            raise _BadRequest("invalid pagination_token") from None
    chunk = items[offset : offset + limit]
    nxt = offset + limit
    next_token = base64.urlsafe_b64encode(f"o:{nxt}".encode()).decode() if nxt < len(items) else None
    return chunk, next_token


def _paged_response(items: list[Any], request: web.Request, field: str, public: Callable[[Any], Any]) -> web.Response:
    """One page of `items` (_page) as `{field: [public(item), ...], "pagination_token": ...}`."""
    page, token = _page(items, request)
    return web.json_response({field: [public(item) for item in page], "pagination_token": token})


def _string_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _BadRequest(f"{name} must be an object with string values")
    return dict(value)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    return body


def _chunks(text: str) -> Iterable[str]:
    """Paragraph chunks of at most ~1000 characters."""
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        while para:
            yield para[:1000]
            para = para[1000:]


_WORD = re.compile(r"\w+", re.UNICODE)


def _score(query: str, chunk: str) -> float:
    q = query.strip().lower()
    low = chunk.lower()
    if q and q in low:
        return 1.0
    words = set(_WORD.findall(q))
    if not words:
        return 0.0
    present = set(_WORD.findall(low))
    return round(len(words & present) / len(words), 4)


def create_app(
    api_key: str,
    management_key: str,
    *,
    max_file_bytes: int = 50 * 1024 * 1024,
    seed: dict[str, Any] | str | Path | None = None,
    processing_delay: float = 0.5,
) -> web.Application:
    """The xAI simulator app. `seed` is a seed document or the path of a JSON file."""
    state = XaiState(processing_delay)

    app = make_seeded_app(state, seed, load=state.load, drop=state.drop_data)
    app[STATE] = state
    # A rate limit (off unless set, `PUT /_sim/rate-limit`) answers in xAI's error shape.
    state.pacing.limited_body = {"code": "ResourceExhausted", "error": "Too many requests: rate limit exceeded"}

    def authorized(request: web.Request, key: str) -> bool:
        header = request.headers.get("Authorization", "")
        return header == f"Bearer {key}"

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_sim/"):
            return await handler(request)
        if path.startswith("/v1/collections"):
            if not authorized(request, management_key):
                return _error(401, "Unauthenticated", "Invalid or missing management API key")
        elif not authorized(request, api_key):
            return _error(401, "Unauthenticated", "Incorrect API key provided")
        return await handler(request)

    app.middlewares.append(auth_middleware)

    # -- Files API ---------------------------------------------------------------------

    async def upload_file(request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise _BadRequest("expected multipart/form-data")
        reader = await request.multipart()
        purpose = ""
        stored_args: dict[str, Any] | None = None
        too_big = False
        async for part in reader:
            if part is None:
                break
            name = getattr(part, "name", None)
            if name == "purpose":
                purpose = (await part.text())[:200]  # type: ignore[union-attr]
                continue
            if name != "file" or stored_args is not None:
                while await part.read_chunk(CHUNK):  # type: ignore[union-attr]
                    pass
                continue
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - kept open as the stored file
            sha = hashlib.sha256()
            md5 = hashlib.md5()
            decoder = codecs.getincrementaldecoder("utf-8")("ignore")
            text_parts: list[str] = []
            text_len = 0
            size = 0
            while True:
                chunk = await part.read_chunk(CHUNK)  # type: ignore[union-attr]
                if not chunk:
                    break
                size += len(chunk)
                if size > max_file_bytes:
                    too_big = True
                    spool.close()
                    # Drain the rest so the client gets a clean answer instead of a reset.
                    while await part.read_chunk(CHUNK):  # type: ignore[union-attr]
                        pass
                    break
                spool.write(chunk)
                sha.update(chunk)
                md5.update(chunk)
                if text_len < MAX_INDEXED_CHARS:
                    piece = decoder.decode(chunk)
                    text_parts.append(piece)
                    text_len += len(piece)
            if too_big:
                continue
            stored_args = {
                "filename": part.filename or "upload",  # type: ignore[union-attr]
                "content_type": part.headers.get("Content-Type", "application/octet-stream"),
                "data": spool,
                "size": size,
                "sha256": sha.hexdigest(),
                "md5": md5.hexdigest(),
                "text": "".join(text_parts)[:MAX_INDEXED_CHARS],
            }
        if too_big:
            if stored_args is not None:
                stored_args["data"].close()
            return _error(413, "PayloadTooLarge", f"File exceeds the maximum size of {max_file_bytes} bytes")
        if stored_args is None:
            raise _BadRequest("multipart field 'file' is required")
        stored = state.add_file(StoredFile(id=new_file_id(), purpose=purpose, **stored_args))
        return web.json_response(stored.public())

    async def list_files(request: web.Request) -> web.Response:
        items = sorted(state.files.values(), key=lambda f: (f.created_at, f.id))
        return _paged_response(items, request, "data", lambda f: f.public())

    async def get_file(request: web.Request) -> web.Response:
        stored = state.files.get(request.match_info["file_id"])
        if stored is None:
            return _not_found("File")
        return web.json_response(stored.public())

    async def file_content(request: web.Request) -> web.StreamResponse:
        stored = state.files.get(request.match_info["file_id"])
        if stored is None:
            return _not_found("File")
        resp = web.StreamResponse(headers={"Content-Type": stored.content_type})
        resp.content_length = stored.size
        await resp.prepare(request)
        stored.data.seek(0)
        while True:
            chunk = stored.data.read(CHUNK)
            if not chunk:
                break
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def delete_file(request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        if not state.delete_file(file_id):
            return _not_found("File")
        return web.json_response({"id": file_id, "object": "file", "deleted": True})

    # -- Collections -------------------------------------------------------------------

    async def create_collection(request: web.Request) -> web.Response:
        body = await _json_body(request)
        name = _required_text(body.get("collection_name"), "collection_name is required")
        metadata = _string_map(body.get("metadata", body.get("fields")), "metadata")
        col = Collection(
            collection_id=f"collection_{uuid.uuid4()}",
            collection_name=name,
            collection_description=str(body.get("collection_description") or ""),
            metadata=metadata,
            created_at=time.time(),
        )
        state.collections[col.collection_id] = col
        return web.json_response(col.public())

    async def list_collections(request: web.Request) -> web.Response:
        items = sorted(state.collections.values(), key=lambda c: (c.created_at, c.collection_id))
        return _paged_response(items, request, "collections", lambda c: c.public())

    def find_collection(request: web.Request) -> Collection | None:
        return state.collections.get(request.match_info["collection_id"])

    async def get_collection(request: web.Request) -> web.Response:
        col = find_collection(request)
        if col is None:
            return _not_found("Collection")
        return web.json_response(col.public())

    async def update_collection(request: web.Request) -> web.Response:
        col = find_collection(request)
        if col is None:
            return _not_found("Collection")
        body = await _json_body(request)
        if "collection_name" in body:
            col.collection_name = _required_text(body["collection_name"], "collection_name must be a non-empty string")
        if "collection_description" in body:
            col.collection_description = str(body["collection_description"] or "")
        if "metadata" in body or "fields" in body:
            col.metadata = _string_map(body.get("metadata", body.get("fields")), "metadata")
        return web.json_response(col.public())

    async def delete_collection(request: web.Request) -> web.Response:
        col = state.collections.pop(request.match_info["collection_id"], None)
        if col is None:
            return _not_found("Collection")
        return web.json_response({})

    async def add_document(request: web.Request) -> web.Response:
        col = find_collection(request)
        if col is None:
            return _not_found("Collection")
        file_id = request.match_info["file_id"]
        if file_id not in state.files:
            return _not_found("File")
        fields = _string_map((await _json_body(request)).get("fields"), "fields")
        if file_id in col.documents:
            return _error(409, "AlreadyExists", f"Document {file_id} already exists in collection {col.collection_id}")
        state.add_document(col, file_id, fields)
        return web.json_response({})

    async def list_documents(request: web.Request) -> web.Response:
        col = find_collection(request)
        if col is None:
            return _not_found("Collection")
        items = sorted(col.documents.values(), key=lambda d: (d.added_at, d.file_id))
        return _paged_response(items, request, "documents", lambda d: state.document_public(col, d))

    async def get_document(request: web.Request) -> web.Response:
        col = find_collection(request)
        if col is None:
            return _not_found("Collection")
        doc = col.documents.get(request.match_info["file_id"])
        if doc is None:
            return _not_found("Document")
        return web.json_response(state.document_public(col, doc))

    async def delete_document(request: web.Request) -> web.Response:
        col = find_collection(request)
        if col is None:
            return _not_found("Collection")
        if col.documents.pop(request.match_info["file_id"], None) is None:
            return _not_found("Document")
        return web.json_response({})

    # -- Search ------------------------------------------------------------------------

    async def search(request: web.Request) -> web.Response:
        body = await _json_body(request)
        query = _required_text(body.get("query"), "query is required")
        source = body.get("source") or {}
        cids = source.get("collection_ids") if isinstance(source, dict) else None
        if not isinstance(cids, list) or not cids or not all(isinstance(c, str) for c in cids):
            raise _BadRequest("source.collection_ids must be a non-empty list of strings")
        try:
            limit = int(body.get("limit") or 10)
        except (TypeError, ValueError):
            raise _BadRequest("limit must be an integer") from None
        matches: list[dict[str, Any]] = []
        for cid in cids:
            col = state.collections.get(cid)
            if col is None:
                return _not_found(f"Collection {cid}")
            for doc in col.documents.values():
                f = state.files.get(doc.file_id)
                if f is None or state.status_of(doc) is not DocumentStatus.PROCESSED:
                    continue
                for i, chunk in enumerate(_chunks(f.text)):
                    score = _score(query, chunk)
                    if score > 0:
                        matches.append(
                            {
                                "file_id": f.id,
                                "collection_id": cid,
                                "chunk_id": f"{f.id}:{i}",
                                "chunk_content": chunk,
                                "score": score,
                                "fields": dict(doc.fields),
                            }
                        )
        matches.sort(key=lambda m: (-m["score"], m["file_id"], m["chunk_id"]))
        return web.json_response({"matches": matches[: max(limit, 0)]})

    app.add_routes(
        [
            web.post("/v1/files", upload_file),
            web.get("/v1/files", list_files),
            web.get("/v1/files/{file_id}", get_file),
            web.get("/v1/files/{file_id}/content", file_content),
            web.delete("/v1/files/{file_id}", delete_file),
            web.post("/v1/collections", create_collection),
            web.get("/v1/collections", list_collections),
            web.get("/v1/collections/{collection_id}", get_collection),
            web.put("/v1/collections/{collection_id}", update_collection),
            web.delete("/v1/collections/{collection_id}", delete_collection),
            web.post("/v1/collections/{collection_id}/documents/{file_id}", add_document),
            web.get("/v1/collections/{collection_id}/documents", list_documents),
            web.get("/v1/collections/{collection_id}/documents/{file_id}", get_document),
            web.delete("/v1/collections/{collection_id}/documents/{file_id}", delete_document),
            web.post("/v1/documents/search", search),
        ]
    )

    async def close_files(app: web.Application) -> None:
        state.drop_data()

    app.on_cleanup.append(close_files)
    return app


