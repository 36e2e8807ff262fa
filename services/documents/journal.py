"""Where the document sync remembers an upload before EspoCRM knows of it (crash safety).

Rules: the journal entry of a document is `{file_id, sha256, md5, collections[, previous_file_id]}`
(the xAI file and the hashes of the bytes it holds; entries written before the MD5 rule have
no `md5`, and the hash migration adds it). Just before an upload the sync sets
`upload_pending = {sha256, md5, started_at}`; a retry that finds it without a file id looks
for the orphaned upload in xAI instead of uploading twice. Right after xAI accepts an upload
the file id is written, before EspoCRM is told.
"""

from __future__ import annotations

from typing import Any, Protocol

JOURNAL_SCOPE = "document_sync.xai"
"""Motia state scope: document id → {file_id, sha256, md5, collections} (see SyncJournal)."""
UPLOAD_PENDING_KEY = "upload_pending"
"""Journal field set just before an upload: {sha256, md5, started_at}. A retry that finds it
without a file id looks for the orphaned upload in xAI instead of uploading twice."""


class SyncJournal(Protocol):
    """Dict entries by key in one store: the upload journal (crash safety, JOURNAL_SCOPE), and
    the link memory and collection change tokens of services.documents.links."""

    async def get(self, doc_id: str) -> dict[str, Any] | None: ...

    async def set(self, doc_id: str, value: dict[str, Any]) -> None: ...

    async def delete(self, doc_id: str) -> None: ...


class StateJournal:
    """A SyncJournal over a Motia-style state object (`get/set/delete(scope, key)`)."""

    def __init__(self, state: Any, scope: str = JOURNAL_SCOPE) -> None:
        self.state = state
        self.scope = scope

    async def get(self, doc_id: str) -> dict[str, Any] | None:
        value = await self.state.get(self.scope, doc_id)
        return value if isinstance(value, dict) else None

    async def set(self, doc_id: str, value: dict[str, Any]) -> None:
        await self.state.set(self.scope, doc_id, value)

    async def delete(self, doc_id: str) -> None:
        await self.state.delete(self.scope, doc_id)


class MemoryJournal:
    """A SyncJournal in a dict (tests, scripts)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    async def get(self, doc_id: str) -> dict[str, Any] | None:
        value = self.data.get(doc_id)
        return dict(value) if value is not None else None

    async def set(self, doc_id: str, value: dict[str, Any]) -> None:
        self.data[doc_id] = dict(value)

    async def delete(self, doc_id: str) -> None:
        self.data.pop(doc_id, None)
