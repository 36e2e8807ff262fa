"""Simulator of xAI's Files API (api.x.ai) and Collections management API
(management-api.x.ai), served by one aiohttp app (see external-apis.md §2).

Auth: Files API paths and `/v1/documents/search` need `Authorization: Bearer <api_key>`,
`/v1/collections...` needs `Bearer <management_key>`; anything else answers 401
`{"code": "Unauthenticated", "error": ...}`.

Behaviour choices where the real API is not documented ([I] in the spec):
- Uploads are read from the multipart stream in chunks of at most 64 KiB into a spooled
  temporary file (memory up to 1 MiB, disk beyond); more than `max_file_bytes` → 413.
  The first 256 Ki characters of a file (decoded as UTF-8, undecodable bytes dropped) are
  kept for search.
- Lists page with an opaque `pagination_token` (null on the last page); `limit` default 100.
- Adding a file that is already in the collection answers **409** `{"code": "AlreadyExists"}`.
- Removing a document that is not in the collection answers 404.
- A document is `PROCESSING` for `processing_delay` seconds after it was added, then
  `PROCESSED`; search only sees processed documents.
- Rate limits (external-apis.md §2: 429, `Retry-After` not documented) are off unless set
  through `PUT /_sim/rate-limit` (simulators.pacing: a token bucket per key, so the API key and
  the management key have one each; `Retry-After` on a configurable share of the 429s).
- Search is naive: documents are cut into paragraph chunks; a chunk's score is the share of
  query words it contains (1.0 when it contains the whole query as a substring).

Seed document (`seed=` or `POST /_sim/seed`):
`{"files": [{"id"?, "filename", "content" | "content_b64", "content_type"?, "purpose"?}],
  "collections": [{"collection_id"?, "collection_name", "collection_description"?, "metadata"?,
                   "documents": [{"file_id", "fields"?}]}]}`.
"""

from __future__ import annotations

from simulators.xai.app import create_app
from simulators.xai.state import (
    STATE,
    Collection,
    Document,
    DocumentStatus,
    StoredFile,
    XaiState,
)

__all__ = ["STATE", "Collection", "Document", "DocumentStatus", "StoredFile", "XaiState", "create_app"]
