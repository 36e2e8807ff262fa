"""The document's bytes: an EspoCRM attachment streamed to a temporary file and hashed on the
way (MD5 for `xaiSyncedHash`, SHA-256 for the journal and the xAI document fields), never
more than one chunk in memory; and the upload of them a crashed run left in xAI."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from services.clients.errors import ValidationError

MAX_FILE_BYTES = 50 * 1024 * 1024
"""xAI's file size limit (external-apis.md §2): a larger attachment fails permanently."""
DOWNLOAD_CHUNK = 64 * 1024


@dataclass
class DownloadedFile:
    path: str
    size: int
    md5: str
    sha256: str

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


async def download_to_tempfile(espocrm: Any, attachment_id: str, max_bytes: int = MAX_FILE_BYTES) -> DownloadedFile:
    """Stream an attachment into a temporary file, hashing (MD5, SHA-256) on the way.

    Never holds more than one chunk in memory. Raises ValidationError (permanent) when
    the file is larger than xAI accepts. The caller removes the file (`remove()`).
    """
    md5, sha = hashlib.md5(), hashlib.sha256()
    size = 0
    fd, path = tempfile.mkstemp(prefix="docsync-")
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in espocrm.download_attachment_stream(attachment_id, chunk_size=DOWNLOAD_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ValidationError(f"attachment {attachment_id} exceeds {max_bytes} bytes (xAI limit)")
                md5.update(chunk)
                sha.update(chunk)
                fh.write(chunk)
    except BaseException:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        raise
    return DownloadedFile(path, size, md5.hexdigest(), sha.hexdigest())


async def find_orphan_upload(xai: Any, filename: str, size: int, started_at: float, sha256: str) -> str | None:
    """The file an interrupted run uploaded: same name and size, created after it started,
    and - read back from xAI - the same SHA-256.

    Only called after a crash inside the upload window (an `upload_pending` journal entry),
    so walking the file list (and reading a candidate back) is rare. Name, size and time
    alone are not enough: an earlier version of the same document with the same size,
    uploaded seconds before (xAI's `created_at` has whole seconds), matches them too."""
    async for f in xai.list_files():
        created = f.get("created_at")
        try:
            created_ts = float(created) if created is not None else 0.0
        except (TypeError, ValueError):
            created_ts = 0.0
        if f.get("filename") == filename and int(f.get("bytes") or -1) == size and created_ts >= started_at - 5:
            digest = hashlib.sha256()
            async for chunk in xai.iter_file_content(str(f["id"])):
                digest.update(chunk)
            if digest.hexdigest() == sha256:
                return str(f["id"])
    return None
