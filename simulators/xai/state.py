"""xAI simulator: stored files, collections and documents (processing delay), seed loading."""

from __future__ import annotations

import base64
import enum
import hashlib
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from aiohttp import web

from simulators.base import SimulatorState

CHUNK = 64 * 1024


SPOOL_IN_MEMORY = 1024 * 1024


MAX_INDEXED_CHARS = 256 * 1024


DEFAULT_PAGE = 100


MAX_PAGE = 1000


class DocumentStatus(str, enum.Enum):
    PROCESSING = "PROCESSING"
    PROCESSED = "PROCESSED"
    FAILED = "FAILED"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_file_id() -> str:
    return f"file-{uuid.uuid4()}"


@dataclass
class StoredFile:
    id: str
    filename: str
    content_type: str
    purpose: str
    size: int
    sha256: str
    md5: str
    data: IO[bytes]
    text: str
    created_at: int = field(default_factory=lambda: int(time.time()))

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "filename": self.filename,
            "bytes": self.size,
            "created_at": self.created_at,
            "expires_at": None,
            "purpose": self.purpose,
        }

    def read_all(self) -> bytes:
        self.data.seek(0)
        return self.data.read()


@dataclass
class Document:
    file_id: str
    fields: dict[str, str]
    added_at: float
    ready_at: float


@dataclass
class Collection:
    collection_id: str
    collection_name: str
    collection_description: str
    metadata: dict[str, str]
    created_at: float
    documents: dict[str, Document] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "collection_id": self.collection_id,
            "collection_name": self.collection_name,
            "collection_description": self.collection_description,
            "created_at": _iso(self.created_at),
            "documents_count": len(self.documents),
            "metadata": dict(self.metadata),
        }


class XaiState(SimulatorState):
    """Files and collections in memory (file bodies in spooled temp files)."""

    def __init__(self, processing_delay: float) -> None:
        super().__init__()
        self.files: dict[str, StoredFile] = {}
        self.collections: dict[str, Collection] = {}
        self.processing_delay = processing_delay

    def drop_data(self) -> None:
        for f in self.files.values():
            f.data.close()
        self.files.clear()
        self.collections.clear()

    def reset(self) -> None:
        super().reset()
        self.drop_data()

    # -- files -------------------------------------------------------------------------

    def add_file(self, stored: StoredFile) -> StoredFile:
        self.files[stored.id] = stored
        return stored

    def delete_file(self, file_id: str) -> bool:
        stored = self.files.pop(file_id, None)
        if stored is None:
            return False
        stored.data.close()
        for col in self.collections.values():
            col.documents.pop(file_id, None)
        return True

    # -- documents -----------------------------------------------------------------------

    def status_of(self, doc: Document) -> DocumentStatus:
        return DocumentStatus.PROCESSED if time.time() >= doc.ready_at else DocumentStatus.PROCESSING

    def document_public(self, col: Collection, doc: Document) -> dict[str, Any]:
        f = self.files.get(doc.file_id)
        status = self.status_of(doc)
        return {
            "file_metadata": {
                "file_id": doc.file_id,
                "name": f.filename if f else "",
                "size_bytes": f.size if f else 0,
                "content_type": f.content_type if f else "",
                "hash": f.sha256 if f else "",
                "created_at": _iso(f.created_at) if f else None,
            },
            "collection_id": col.collection_id,
            "fields": dict(doc.fields),
            "status": status.value,
            "added_at": _iso(doc.added_at),
            "error_message": "",
        }

    def add_document(self, col: Collection, file_id: str, fields: dict[str, str]) -> Document:
        now = time.time()
        doc = Document(file_id=file_id, fields=fields, added_at=now, ready_at=now + self.processing_delay)
        col.documents[file_id] = doc
        return doc

    # -- seed --------------------------------------------------------------------------

    def load(self, doc: dict[str, Any]) -> None:
        for spec in doc.get("files", []):
            if "content_b64" in spec:
                content = base64.b64decode(spec["content_b64"])
            else:
                content = str(spec.get("content", "")).encode("utf-8")
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - kept open as the stored file
            spool.write(content)
            stored = StoredFile(
                id=spec.get("id") or new_file_id(),
                filename=spec["filename"],
                content_type=spec.get("content_type", "application/octet-stream"),
                purpose=spec.get("purpose", ""),
                data=spool,  # type: ignore[arg-type]
                size=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
                md5=hashlib.md5(content).hexdigest(),
                text=content[:MAX_INDEXED_CHARS].decode("utf-8", "ignore"),
            )
            self.add_file(stored)
        for spec in doc.get("collections", []):
            col = Collection(
                collection_id=spec.get("collection_id") or f"collection_{uuid.uuid4()}",
                collection_name=spec["collection_name"],
                collection_description=spec.get("collection_description", ""),
                metadata={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
                created_at=time.time(),
            )
            self.collections[col.collection_id] = col
            for d in spec.get("documents", []):
                if d["file_id"] not in self.files:
                    raise KeyError(f"seed document refers to unknown file {d['file_id']}")
                document = self.add_document(col, d["file_id"], {str(k): str(v) for k, v in (d.get("fields") or {}).items()})
                document.ready_at = document.added_at  # seeded documents are already indexed


STATE = web.AppKey("xai_state", XaiState)


