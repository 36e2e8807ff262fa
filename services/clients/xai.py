"""Async client of xAI's Files API (api.x.ai) and Collections management API
(management-api.x.ai). Knows nothing of Motia.

Two HTTP clients with their own base URL and key: files and search use the API key,
collections use the management key. Every call retries what is retryable with the given
`RetryPolicy` (a 429's `Retry-After` is honoured, else exponential backoff).

Idempotency: adding a file that is already in a collection (409) counts as success,
removing one that is not there (404) too. Uploads are streamed: bytes are sent in 64 KiB
slices, a path is read from disk chunk by chunk, and an async iterator is first spooled
to a temporary file (memory up to 1 MiB, disk beyond) so that a retry can resend it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import IO, Any, Union, Unpack

import aiohttp
from aiohttp import payload as aiohttp_payload
from aiohttp.abc import AbstractStreamWriter

from services.clients.errors import (
    ApiError,
    ConfigError,
    ConflictError,
    NotFoundError,
    ValidationError,
    is_retryable,
)
from services.clients.http import HttpOptions, JsonHttpClient, connection_errors, error_from_response
from services.clients.retry import RetryPolicy, retry_async

log = logging.getLogger(__name__)

XAI_API_BASE_URL = "https://api.x.ai"
XAI_MANAGEMENT_BASE_URL = "https://management-api.x.ai"
MAX_FILE_BYTES = 50 * 1024 * 1024
CHUNK = 64 * 1024
SPOOL_IN_MEMORY = 1024 * 1024

XAI_RETRY_POLICY = RetryPolicy(max_attempts=5, base_delay=2.0, max_delay=60.0, max_total=300.0)
"""The guide's policy for xAI: more attempts and longer waits, because of rate limits."""

UploadContent = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", AsyncIterable[bytes]]


class XAIDocumentStatus(str, enum.Enum):
    """Indexing state of a document in a collection."""

    PROCESSING = "PROCESSING"
    PROCESSED = "PROCESSED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: Any) -> XAIDocumentStatus:
        """Accepts `PROCESSED` as well as the enum-style `DOCUMENT_STATUS_PROCESSED`."""
        text = str(value or "").upper().removeprefix("DOCUMENT_STATUS_")
        try:
            return cls(text)
        except ValueError:
            return cls.UNKNOWN


def document_status(document: dict[str, Any]) -> XAIDocumentStatus:
    """The status of a document dict as returned by `get_document`/`list_documents`."""
    return XAIDocumentStatus.parse(document.get("status"))


class _StreamPayload(aiohttp_payload.Payload):
    """A multipart part of known size whose bytes come from a fresh async iterator."""

    _autoclose = True

    def __init__(self, opener: Callable[[], AsyncIterator[bytes]], size: int, content_type: str) -> None:
        super().__init__(opener, content_type=content_type)
        self._size = size

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a streamed upload cannot be decoded")

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        remaining = content_length
        async for chunk in self._value():
            if remaining is None:
                await writer.write(chunk)
            elif remaining > 0:
                await writer.write(chunk[:remaining])
                remaining -= len(chunk)
            else:
                break


class _UploadSource:
    """Re-readable bytes for an upload: memory slices, a file on disk, or a spool."""

    def __init__(self, size: int, opener: Callable[[], AsyncIterator[bytes]], cleanup: Callable[[], None]) -> None:
        self.size = size
        self.open = opener
        self.close = cleanup

    @classmethod
    async def of(cls, content: UploadContent, max_bytes: int) -> _UploadSource:
        if isinstance(content, (bytes, bytearray, memoryview)):
            view = memoryview(content)

            async def from_memory() -> AsyncIterator[bytes]:
                for start in range(0, len(view), CHUNK):
                    yield bytes(view[start : start + CHUNK])

            return cls(len(view), from_memory, lambda: None)
        if isinstance(content, (str, os.PathLike)):
            path = os.fspath(content)
            size = os.stat(path).st_size

            async def from_path() -> AsyncIterator[bytes]:
                with open(path, "rb") as fh:
                    while chunk := await asyncio.to_thread(fh.read, CHUNK):
                        yield chunk

            return cls(size, from_path, lambda: None)
        if isinstance(content, AsyncIterable):
            spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
            size = 0
            try:
                async for chunk in content:
                    size += len(chunk)
                    if size > max_bytes:
                        raise ValidationError(f"upload exceeds {max_bytes} bytes")
                    spool.write(chunk)
            except BaseException:
                spool.close()
                raise

            async def from_spool() -> AsyncIterator[bytes]:
                spool.seek(0)
                while chunk := spool.read(CHUNK):
                    yield chunk

            return cls(size, from_spool, spool.close)
        raise TypeError(f"cannot upload content of type {type(content).__name__}")


class _BearerClient(JsonHttpClient):
    """A JsonHttpClient sending `Authorization: Bearer <key>`."""

    def __init__(self, service: str, base_url: str, key: str, **http: Unpack[HttpOptions]) -> None:
        super().__init__(base_url, **http)
        self.service = service
        self._key = key

    async def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"}

    async def post_once(self, path: str, data: Any, timeout: aiohttp.ClientTimeout) -> Any:
        """One POST of a (multipart) body with its own timeout; no retry, no re-auth."""
        session = await self._get_session()
        with connection_errors(self.service, "POST", path):
            async with session.post(self.url(path), data=data, headers=await self.auth_headers(), timeout=timeout) as resp:
                if resp.status >= 400:
                    raise await error_from_response(self.service, resp)
                return await resp.json(content_type=None)


class XAIAPI:
    """Files, collections, documents and search on xAI."""

    def __init__(
        self,
        api_base_url: str = XAI_API_BASE_URL,
        management_base_url: str = XAI_MANAGEMENT_BASE_URL,
        api_key: str = "",
        management_key: str = "",
        *,
        timeout: float = 30.0,
        upload_timeout: float = 600.0,
        retry_policy: RetryPolicy = XAI_RETRY_POLICY,
        session: aiohttp.ClientSession | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        page_size: int = 100,
    ) -> None:
        if not api_key or not management_key:
            raise ConfigError("XAIAPI needs both the API key and the management key")
        common = HttpOptions(timeout=timeout, retry_policy=retry_policy, session=session)
        self.files = _BearerClient("xai", api_base_url, api_key, **common)
        self.management = _BearerClient("xai-management", management_base_url, management_key, **common)
        self.retry_policy = retry_policy
        self.upload_timeout = aiohttp.ClientTimeout(total=upload_timeout)
        self.max_file_bytes = max_file_bytes
        self.page_size = page_size

    async def close(self) -> None:
        await self.files.close()
        await self.management.close()

    async def __aenter__(self) -> XAIAPI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- files -------------------------------------------------------------------------

    async def upload_file(
        self,
        filename: str | None = None,
        content: UploadContent | None = None,
        mime_type: str = "application/octet-stream",
        *,
        file_content: UploadContent | None = None,
        purpose: str = "assistants",
    ) -> str:
        """Upload a file (bytes, a path, or an async iterator of chunks); returns its file_id.

        `file_content=` is accepted as an alias of `content`.
        """
        info = await self.upload_file_info(filename, content if content is not None else file_content, mime_type, purpose=purpose)
        return str(info["id"])

    async def upload_file_info(
        self,
        filename: str | None,
        content: UploadContent | None,
        mime_type: str = "application/octet-stream",
        *,
        purpose: str = "assistants",
    ) -> dict[str, Any]:
        """Like `upload_file`, returning the whole answer `{id, filename, bytes, created_at, ...}`."""
        if not filename:
            raise ValidationError("upload_file needs a filename")
        if content is None:
            raise ValidationError("upload_file needs content")
        source = await _UploadSource.of(content, self.max_file_bytes)
        try:
            if source.size > self.max_file_bytes:
                raise ValidationError(f"{filename} has {source.size} bytes, more than the {self.max_file_bytes} xAI accepts")

            async def attempt() -> Any:
                form = aiohttp.FormData()
                form.add_field("purpose", purpose)
                form.add_field(
                    "file",
                    _StreamPayload(source.open, source.size, mime_type or "application/octet-stream"),
                    filename=filename,
                    content_type=mime_type or "application/octet-stream",
                )
                return await self.files.post_once("v1/files", form, self.upload_timeout)

            result = await retry_async(attempt, self.retry_policy, on_retry=self._log_retry("upload_file"))
        finally:
            source.close()
        if not isinstance(result, dict) or "id" not in result:
            raise ApiError("xai", 502, f"upload answer without id: {str(result)[:200]}")
        return result

    async def get_file(self, file_id: str) -> dict[str, Any] | None:
        """The file's metadata, or None when xAI does not know it."""
        return await _found(self.files, f"v1/files/{file_id}")

    async def file_exists(self, file_id: str) -> bool:
        return await self.get_file(file_id) is not None

    async def delete_file(self, file_id: str) -> bool:
        """Delete a file; False when it was already gone."""
        return await _deleted(self.files, f"v1/files/{file_id}")

    async def list_files(self) -> AsyncIterator[dict[str, Any]]:
        """All files, walking the pages."""
        async for item in self._paged(self.files, "v1/files", "data"):
            yield item

    async def iter_file_content(self, file_id: str, chunk_size: int = CHUNK) -> AsyncIterator[bytes]:
        """The file's bytes in chunks."""
        async for chunk in self.files.stream(f"v1/files/{file_id}/content", chunk_size=chunk_size):
            yield chunk

    # -- collections -------------------------------------------------------------------

    async def create_collection(
        self, name: str, metadata: dict[str, str] | None = None, description: str | None = None
    ) -> dict[str, Any]:
        """Create a collection; metadata values are sent as strings."""
        body: dict[str, Any] = {"collection_name": name, "metadata": _strings(metadata)}
        if description is not None:
            body["collection_description"] = description
        result: dict[str, Any] = await self.management.request("POST", "v1/collections", json_body=body)
        return result

    async def get_collection(self, collection_id: str) -> dict[str, Any] | None:
        return await _found(self.management, f"v1/collections/{collection_id}")

    async def update_collection(
        self,
        collection_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if name is not None:
            body["collection_name"] = name
        if description is not None:
            body["collection_description"] = description
        if metadata is not None:
            body["metadata"] = _strings(metadata)
        result: dict[str, Any] = await self.management.request("PUT", f"v1/collections/{collection_id}", json_body=body)
        return result

    async def delete_collection(self, collection_id: str) -> bool:
        """Delete a collection (its files stay); False when it was already gone."""
        return await _deleted(self.management, f"v1/collections/{collection_id}")

    async def list_collections(self) -> AsyncIterator[dict[str, Any]]:
        """All collections, walking the pages."""
        async for item in self._paged(self.management, "v1/collections", "collections"):
            yield item

    async def find_collections_by_metadata(self, key: str, value: str) -> list[dict[str, Any]]:
        """Collections whose metadata has `key` == `value` (a scan; xAI has no filter)."""
        found: list[dict[str, Any]] = []
        async for col in self.list_collections():
            meta = col.get("metadata") or {}
            if isinstance(meta, dict) and key in meta and str(meta[key]) == str(value):
                found.append(col)
        return found

    # -- documents ---------------------------------------------------------------------

    async def add_to_collection(self, collection_id: str, file_id: str, fields: dict[str, str] | None = None) -> bool:
        """Add an uploaded file to a collection. True if added now, False if it was already there."""
        try:
            await self.management.request(
                "POST",
                f"v1/collections/{collection_id}/documents/{file_id}",
                json_body={"fields": _strings(fields)},
            )
        except ConflictError:
            return False
        return True

    async def add_to_collections(
        self, collection_ids: Iterable[str], file_id: str, fields: dict[str, str] | None = None
    ) -> list[str]:
        """Add a file to several collections; returns those that now hold it.

        Permanent failures (e.g. a collection that no longer exists) are logged and skipped;
        if any failure was retryable, the first such error is raised after trying all
        (re-running is safe: already-present counts as success).
        """
        added: list[str] = []
        retryable: BaseException | None = None
        for cid in collection_ids:
            try:
                await self.add_to_collection(cid, file_id, fields)
                added.append(cid)
            except Exception as exc:  # noqa: BLE001 - classified below
                log.warning("xAI: adding %s to %s failed: %s", file_id, cid, exc)
                if is_retryable(exc) and retryable is None:
                    retryable = exc
                elif not isinstance(exc, (ApiError, ValidationError)):
                    raise
        if retryable is not None:
            raise retryable
        return added

    async def remove_from_collection(self, collection_id: str, file_id: str) -> bool:
        """Remove a file from a collection (the file itself stays). False if it was not there."""
        return await _deleted(self.management, f"v1/collections/{collection_id}/documents/{file_id}")

    async def get_document(self, collection_id: str, file_id: str) -> dict[str, Any] | None:
        """`{file_metadata{file_id,name,size_bytes,content_type,hash}, status, fields}` or None."""
        return await _found(self.management, f"v1/collections/{collection_id}/documents/{file_id}")

    async def list_documents(self, collection_id: str) -> AsyncIterator[dict[str, Any]]:
        """All documents of a collection, walking the pages."""
        async for item in self._paged(self.management, f"v1/collections/{collection_id}/documents", "documents"):
            yield item

    # -- search ------------------------------------------------------------------------

    async def search(self, query: str, collection_ids: list[str], limit: int = 10) -> list[dict[str, Any]]:
        """Matches `{file_id, collection_id, chunk_content, score, ...}`, best first."""
        body = {"query": query, "source": {"collection_ids": list(collection_ids)}, "limit": limit}
        answer = await self.files.request("POST", "v1/documents/search", json_body=body)
        return list((answer or {}).get("matches") or [])

    # -- helpers -----------------------------------------------------------------------

    async def _paged(self, client: JsonHttpClient, path: str, key: str) -> AsyncIterator[dict[str, Any]]:
        token: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"limit": self.page_size}
            if token:
                params["pagination_token"] = token
            answer = await client.request("GET", path, params=params) or {}
            for item in answer.get(key) or []:
                yield item
            token = answer.get("pagination_token") or None
            if not token or token in seen:
                return
            seen.add(token)

    @staticmethod
    def _log_retry(what: str) -> Callable[[int, BaseException, float], None]:
        def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
            log.warning("xAI %s attempt %d failed (%s); retrying in %.1f s", what, attempt, exc, delay)

        return on_retry


async def _found(client: JsonHttpClient, path: str) -> dict[str, Any] | None:
    """GET `path`; None when xAI answers 404."""
    try:
        result: dict[str, Any] = await client.request("GET", path)
    except NotFoundError:
        return None
    return result


async def _deleted(client: JsonHttpClient, path: str) -> bool:
    """DELETE `path`; False when it was already gone (404)."""
    try:
        await client.request("DELETE", path)
    except NotFoundError:
        return False
    return True


def _strings(values: dict[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (values or {}).items()}


__all__ = [
    "MAX_FILE_BYTES",
    "XAI_API_BASE_URL",
    "XAI_MANAGEMENT_BASE_URL",
    "XAI_RETRY_POLICY",
    "XAIDocumentStatus",
    "XAIAPI",
    "document_status",
]
