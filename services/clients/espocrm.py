"""Async client of the EspoCRM REST API (external-apis.md §1). Knows nothing of Motia.

`base_url` includes `/api/v1` (e.g. `https://crm.example.com/api/v1`). Auth is `X-Api-Key`,
or HMAC (`X-Hmac-Authorization`) when `api_secret` is given. Errors are the typed ones of
`services.clients.errors` (NotFoundError for 404, ConflictError for 409 — reason `duplicate` with
the duplicates as JSON in `body` —, AuthError for 401/403, ApiError otherwise) carrying
EspoCRM's `X-Status-Reason` as `reason`; retryable ones (429, 5xx, network) are retried by
the client's RetryPolicy, honouring `Retry-After`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from enum import Enum, StrEnum
from typing import Any, TypedDict, Unpack
from urllib.parse import quote

from services.clients.http import HttpOptions, JsonHttpClient, RequestParts

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

WhereItem = Mapping[str, Any]
QueryPairs = list[tuple[str, str]]


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flatten(prefix: str, value: Any, out: QueryPairs) -> None:
    if value is None:
        return  # like PHP's http_build_query: nulls are left out
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}[{key}]", item, out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _flatten(f"{prefix}[{index}]", item, out)
    else:
        out.append((prefix, _scalar(value)))


def encode_where(where: Sequence[WhereItem], prefix: str = "where") -> QueryPairs:
    """Encode EspoCRM where items as PHP bracket query pairs.

    `[{"type": "equals", "attribute": "status", "value": "New"}]` →
    `[("where[0][type]", "equals"), ("where[0][attribute]", "status"), ("where[0][value]", "New")]`;
    arrays become `[value][0]=...`, nested `and`/`or` items nest the same way, booleans become
    `true`/`false`, None values are left out.
    """
    out: QueryPairs = []
    for index, item in enumerate(where):
        if not isinstance(item, Mapping):
            raise TypeError(f"where item {index} must be a mapping, not {type(item).__name__}")
        _flatten(f"{prefix}[{index}]", item, out)
    return out


class ListQuery(TypedDict, total=False):
    """What every list call may filter and order by (all optional): `where` items (see
    `encode_where`), `select` (names, or one comma-separated string), `order_by`, `order`."""

    where: Sequence[WhereItem] | None
    select: str | Iterable[str] | None
    order_by: str | None
    order: Order | str | None


def _list_params(query: ListQuery, max_size: int, offset: int) -> QueryPairs:
    where, select = query.get("where"), query.get("select")
    order_by, order = query.get("order_by"), query.get("order")
    if max_size > MAX_PAGE_SIZE:
        raise ValueError(f"max_size must not exceed {MAX_PAGE_SIZE} (EspoCRM answers 403); use offset paging")
    params: QueryPairs = [("maxSize", str(max_size)), ("offset", str(offset))]
    if order_by:
        params.append(("orderBy", order_by))
    if order:
        params.append(("order", _scalar(order).lower()))
    if select:
        params.append(("select", select if isinstance(select, str) else ",".join(select)))
    if where:
        params.extend(encode_where(where))
    return params


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _related_path(entity_type: str, entity_id: str, link: str) -> str:
    return f"{_seg(entity_type)}/{_seg(entity_id)}/{_seg(link)}"


class EspoCRMAPI(JsonHttpClient):
    """EspoCRM REST client: records, relationships, attachments, webhooks."""

    service = "espocrm"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        api_secret: str | None = None,
        **http: Unpack[HttpOptions],
    ) -> None:
        super().__init__(base_url, **http)
        self.api_key = api_key
        self.api_secret = api_secret

    # --- auth
    async def auth_headers(self) -> dict[str, str]:
        if self.api_secret is not None:
            return {}  # HMAC headers depend on method and path: see _headers()
        return {"X-Api-Key": self.api_key}

    def hmac_header(self, method: str, path: str) -> str:
        """`X-Hmac-Authorization` for `METHOD /path` (path after /api/v1, no query)."""
        assert self.api_secret is not None
        message = f"{method.upper()} /{path.lstrip('/')}"
        digest = hmac.new(self.api_secret.encode(), message.encode(), hashlib.sha256).hexdigest()
        return base64.b64encode(f"{self.api_key}:{digest}".encode()).decode("ascii")

    def _headers(self, method: str, path: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.api_secret is not None:
            headers["X-Hmac-Authorization"] = self.hmac_header(method, path)
        return headers

    async def _call(self, method: str, path: str, *, expect_json: bool = True, **parts: Unpack[RequestParts]) -> Any:
        parts["headers"] = self._headers(method, path, parts.get("headers"))
        return await self.request(method, path, expect_json=expect_json, **parts)

    # --- records
    async def get_entity(self, entity_type: str, entity_id: str) -> dict[str, Any]:
        """One record; NotFoundError when it does not exist."""
        return await self._call("GET", f"{_seg(entity_type)}/{_seg(entity_id)}")  # type: ignore[no-any-return]

    async def list_entities(
        self, entity_type: str, *, max_size: int = DEFAULT_PAGE_SIZE, offset: int = 0, **query: Unpack[ListQuery]
    ) -> dict[str, Any]:
        """One page: `{"list": [...], "total": N}`."""
        return await self._list_page(_seg(entity_type), max_size, offset, query)

    async def iter_entities(
        self, entity_type: str, *, page_size: int = MAX_PAGE_SIZE, **query: Unpack[ListQuery]
    ) -> AsyncIterator[dict[str, Any]]:
        """Every matching record, page by page (ordered by `id` unless `order_by` is given)."""
        async for record in self._iter_pages(_seg(entity_type), page_size, query):
            yield record

    async def _list_page(self, path: str, max_size: int, offset: int, query: ListQuery) -> dict[str, Any]:
        params = _list_params(query, max_size, offset)
        return await self._call("GET", path, params=params)  # type: ignore[no-any-return]

    async def _iter_pages(self, path: str, page_size: int, query: ListQuery) -> AsyncIterator[dict[str, Any]]:
        if page_size <= 0:
            raise ValueError("page_size must be positive")
        if not query.get("order_by"):
            query = {**query, "order_by": "id", "order": query.get("order") or Order.ASC}
        offset = 0
        while True:
            params = _list_params(query, page_size, offset)
            page = await self._call("GET", path, params=params)
            records = page.get("list", []) if isinstance(page, dict) else []
            for record in records:
                yield record
            offset += len(records)
            total = page.get("total", -1) if isinstance(page, dict) else -1
            if len(records) < page_size or (isinstance(total, int) and total >= 0 and offset >= total):
                return

    async def create_entity(
        self, entity_type: str, data: Mapping[str, Any], skip_duplicate_check: bool = False
    ) -> dict[str, Any]:
        """Create a record; ConflictError (reason `duplicate`) unless `skip_duplicate_check`."""
        headers = {"X-Skip-Duplicate-Check": "true"} if skip_duplicate_check else None
        return await self._call(  # type: ignore[no-any-return]
            "POST", _seg(entity_type), json_body=_plain(data), headers=headers
        )

    async def update_entity(self, entity_type: str, entity_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Update the given attributes (PUT); returns the whole record."""
        return await self._call(  # type: ignore[no-any-return]
            "PUT", f"{_seg(entity_type)}/{_seg(entity_id)}", json_body=_plain(data)
        )

    async def delete_entity(self, entity_type: str, entity_id: str) -> bool:
        """Delete a record; NotFoundError when it does not exist."""
        return bool(await self._call("DELETE", f"{_seg(entity_type)}/{_seg(entity_id)}"))

    # --- relationships
    async def list_related(
        self,
        entity_type: str,
        entity_id: str,
        link: str,
        *,
        max_size: int = DEFAULT_PAGE_SIZE,
        offset: int = 0,
        **query: Unpack[ListQuery],
    ) -> dict[str, Any]:
        """One page of the records related through `link`: `{"list", "total"}`."""
        return await self._list_page(_related_path(entity_type, entity_id, link), max_size, offset, query)

    async def iter_related(
        self, entity_type: str, entity_id: str, link: str, *, page_size: int = MAX_PAGE_SIZE, **query: Unpack[ListQuery]
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record related through `link`, page by page."""
        async for record in self._iter_pages(_related_path(entity_type, entity_id, link), page_size, query):
            yield record

    @staticmethod
    def _link_body(ids: str | Sequence[str]) -> dict[str, Any]:
        if isinstance(ids, str):
            return {"id": ids}
        ids = list(ids)
        if not ids:
            raise ValueError("ids must not be empty")
        return {"ids": ids}

    async def link_entities(self, entity_type: str, entity_id: str, link: str, ids: str | Sequence[str]) -> bool:
        """Relate one record (or several) through `link`."""
        path = _related_path(entity_type, entity_id, link)
        return bool(await self._call("POST", path, json_body=self._link_body(ids)))

    async def unlink_entities(self, entity_type: str, entity_id: str, link: str, ids: str | Sequence[str]) -> bool:
        """Remove the relation(s) through `link`."""
        path = _related_path(entity_type, entity_id, link)
        return bool(await self._call("DELETE", path, json_body=self._link_body(ids)))

    # --- attachments
    async def upload_attachment(
        self,
        name: str,
        content: bytes,
        mime_type: str,
        related_type: str,
        field: str,
        role: str = "Attachment",
    ) -> dict[str, Any]:
        """Upload a file for `related_type.field`; returns `{id, name, type, size, ...}`.

        Link it by setting e.g. `{"fileId": result["id"]}` on the record.
        """
        body = {
            "name": name,
            "type": mime_type,
            "role": role,
            "relatedType": related_type,
            "field": field,
            "file": f"data:{mime_type};base64,{base64.b64encode(content).decode('ascii')}",
        }
        return await self._call("POST", "Attachment", json_body=body)  # type: ignore[no-any-return]

    async def download_attachment_stream(self, attachment_id: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """The attachment's bytes in chunks (not retried once bytes have flowed)."""
        path = f"Attachment/file/{_seg(attachment_id)}"
        async for chunk in self.stream(path, headers=self._headers("GET", path), chunk_size=chunk_size):
            yield chunk

    async def download_attachment(self, attachment_id: str) -> bytes:
        """The attachment's bytes (retried as a whole)."""
        data = await self._call("GET", f"Attachment/file/{_seg(attachment_id)}", expect_json=False)
        return bytes(data)

    # --- webhooks
    async def register_webhook(self, event: str, url: str) -> dict[str, Any]:
        """Register an outgoing webhook; returns `{id, secretKey, event, url, ...}`."""
        return await self._call("POST", "Webhook", json_body={"event": event, "url": url})  # type: ignore[no-any-return]

    async def delete_webhook(self, webhook_id: str) -> bool:
        return bool(await self._call("DELETE", f"Webhook/{_seg(webhook_id)}"))


def _plain(data: Mapping[str, Any]) -> dict[str, Any]:
    """Make enum values JSON-serialisable."""

    def conv(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, Mapping):
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [conv(v) for v in value]
        return value

    return {k: conv(v) for k, v in data.items()}
