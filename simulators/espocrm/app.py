"""EspoCRM simulator: the aiohttp app (auth middleware, `/api/v1` routes, admin routes)."""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from simulators.base import STATE_KEY, make_app
from simulators.espocrm.data import Attachment, EspoCRMState
from simulators.espocrm.model import (
    API_PREFIX,
    DEFAULT_LINKS,
    ENTITY_NAME_RE,
    EspoError,
    LinkDef,
    generate_id,
    truthy,
)
from simulators.espocrm.query import SearchParams, parse_search_params
from simulators.espocrm.signing import (
    MAX_BATCH_SIZE,
)
from simulators.espocrm.webhooks import Webhook, WebhookDispatcher


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise EspoError(400, "Invalid JSON.") from None


async def _object_body(request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise EspoError(400, "Body must be a JSON object.")
    return body


def _entity_type(request: web.Request) -> str:
    entity_type = request.match_info["entityType"]
    if not ENTITY_NAME_RE.match(entity_type):
        raise EspoError(404, f"Unknown entity type '{entity_type}'.")
    return entity_type


def _list_response(request: web.Request, page: list[dict[str, Any]], total: int, params: SearchParams) -> web.Response:
    if truthy(request.headers.get("X-No-Total", "")):
        total = -1 if params.offset + len(page) < total else -2
    return web.json_response({"total": total, "list": page})


def _routes(state: EspoCRMState) -> list[web.RouteDef]:
    def params_of(request: web.Request) -> SearchParams:
        return parse_search_params(list(request.rel_url.query.items()), state.max_size_limit)

    async def app_user(request: web.Request) -> web.Response:
        return web.json_response({"user": {"id": "sim-api-user", "userName": "api", "type": "api", "isAdmin": False}})

    # webhooks
    async def webhook_create(request: web.Request) -> web.Response:
        body = await _object_body(request)
        try:
            hook = state.dispatcher.register(str(body.get("event", "")), str(body.get("url", "")))
        except ValueError as exc:
            raise EspoError(400, str(exc)) from None
        return web.json_response(hook.public())

    async def webhook_list(request: web.Request) -> web.Response:
        hooks = [h.public() for h in state.dispatcher.webhooks.values()]
        return web.json_response({"total": len(hooks), "list": hooks})

    def hook_of(request: web.Request) -> Webhook:
        hook = state.dispatcher.webhooks.get(request.match_info["id"])
        if hook is None:
            raise EspoError(404, f"Webhook '{request.match_info['id']}' not found.")
        return hook

    async def webhook_get(request: web.Request) -> web.Response:
        return web.json_response(hook_of(request).public())

    async def webhook_update(request: web.Request) -> web.Response:
        hook = hook_of(request)
        body = await _object_body(request)
        if "url" in body:
            hook.url = str(body["url"])
        if "isActive" in body:
            hook.is_active = bool(body["isActive"])
        return web.json_response(hook.public())

    async def webhook_delete(request: web.Request) -> web.Response:
        state.dispatcher.remove(hook_of(request).id)
        return web.json_response(True)

    # attachments
    async def attachment_create(request: web.Request) -> web.Response:
        body = await _object_body(request)
        data_uri = body.get("file")
        if not isinstance(data_uri, str) or not data_uri.startswith("data:"):
            raise EspoError(400, "No file contents (expected a data: URI in 'file').")
        header, sep, payload = data_uri.partition(",")
        if not sep or not header.endswith(";base64"):
            raise EspoError(400, "File contents must be a base64 data URI.")
        try:
            content = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise EspoError(400, "Bad base64 file contents.") from None
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise EspoError(400, "No attachment name.")
        if not body.get("field") or not (body.get("relatedType") or body.get("parentType")):
            raise EspoError(400, "Attachment needs 'field' and 'relatedType' (or 'parentType').")
        mime = body.get("type") or header[5:].split(";")[0] or "application/octet-stream"
        att = state.add_attachment(
            Attachment(
                id=generate_id(),
                name=name,
                type=str(mime),
                content=content,
                role=str(body.get("role") or "Attachment"),
                related_type=body.get("relatedType"),
                field_name=body.get("field"),
                parent_type=body.get("parentType"),
                parent_id=body.get("parentId"),
            )
        )
        return web.json_response(att.public())

    def attachment_of(request: web.Request) -> Attachment:
        att = state.attachments.get(request.match_info["id"])
        if att is None:
            raise EspoError(404, f"Attachment '{request.match_info['id']}' not found.")
        return att

    async def attachment_file(request: web.Request) -> web.Response:
        att = attachment_of(request)
        quoted = urllib.parse.quote(att.name)
        ascii_name = att.name.encode("ascii", "replace").decode("ascii").replace('"', "")
        return web.Response(
            body=att.content,
            headers={
                "Content-Type": att.type,
                "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}",
            },
        )

    async def attachment_get(request: web.Request) -> web.Response:
        return web.json_response(attachment_of(request).public())

    async def attachment_delete(request: web.Request) -> web.Response:
        state.attachments.pop(attachment_of(request).id)
        return web.json_response(True)

    # records
    async def list_records(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        params = params_of(request)
        page, total = state.search(entity_type, params)
        return _list_response(request, page, total, params)

    async def create_record(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        body = await _object_body(request)
        skip = truthy(request.headers.get("X-Skip-Duplicate-Check", "false"))
        return web.json_response(state.create(entity_type, body, skip_duplicate_check=skip))

    async def get_record(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        return web.json_response(state.read(entity_type, request.match_info["id"]))

    async def update_record(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        body = await _object_body(request)
        return web.json_response(state.update(entity_type, request.match_info["id"], body))

    async def delete_record(request: web.Request) -> web.Response:
        state.delete(_entity_type(request), request.match_info["id"])
        return web.json_response(True)

    async def list_related(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        record_id, link = request.match_info["id"], request.match_info["link"]
        state.require(entity_type, record_id)
        other = state.other_type(entity_type, link)
        params = params_of(request)
        store = state.entities.get(other, {})
        candidates = [store[i] for i in state.related_ids(entity_type, record_id, link) if i in store]
        page, total = state.search(other, params, candidates)
        return _list_response(request, page, total, params)

    async def _link_ids(request: web.Request) -> list[str]:
        body = await _object_body(request)
        if body.get("ids") is not None:
            ids = body["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise EspoError(400, "'ids' must be an array of strings.")
            return ids
        if isinstance(body.get("id"), str) and body["id"]:
            return [body["id"]]
        raise EspoError(400, "No 'id' or 'ids' in the body.")

    async def link_records(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        ids = await _link_ids(request)
        record_id, link = request.match_info["id"], request.match_info["link"]
        other = state.other_type(entity_type, link)
        state.require(entity_type, record_id)
        for fid in ids:
            state.require(other, fid, what="Related record")
        for fid in ids:
            state.link(entity_type, record_id, link, fid)
        return web.json_response(True)

    async def unlink_records(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        ids = await _link_ids(request)
        record_id, link = request.match_info["id"], request.match_info["link"]
        state.require(entity_type, record_id)
        state.other_type(entity_type, link)
        for fid in ids:
            state.unlink(entity_type, record_id, link, fid)
        return web.json_response(True)

    p = API_PREFIX
    return [
        web.get(f"{p}/App/user", app_user),
        web.post(f"{p}/Webhook", webhook_create),
        web.get(f"{p}/Webhook", webhook_list),
        web.get(f"{p}/Webhook/{{id}}", webhook_get),
        web.put(f"{p}/Webhook/{{id}}", webhook_update),
        web.patch(f"{p}/Webhook/{{id}}", webhook_update),
        web.delete(f"{p}/Webhook/{{id}}", webhook_delete),
        web.post(f"{p}/Attachment", attachment_create),
        web.get(f"{p}/Attachment/file/{{id}}", attachment_file),
        web.get(f"{p}/Attachment/{{id}}", attachment_get),
        web.delete(f"{p}/Attachment/{{id}}", attachment_delete),
        web.get(f"{p}/{{entityType}}", list_records),
        web.post(f"{p}/{{entityType}}", create_record),
        web.get(f"{p}/{{entityType}}/{{id}}", get_record),
        web.put(f"{p}/{{entityType}}/{{id}}", update_record),
        web.patch(f"{p}/{{entityType}}/{{id}}", update_record),
        web.delete(f"{p}/{{entityType}}/{{id}}", delete_record),
        web.get(f"{p}/{{entityType}}/{{id}}/{{link}}", list_related),
        web.post(f"{p}/{{entityType}}/{{id}}/{{link}}", link_records),
        web.delete(f"{p}/{{entityType}}/{{id}}/{{link}}", unlink_records),
    ]


def _admin_routes(state: EspoCRMState) -> list[web.RouteDef]:
    async def deliveries(request: web.Request) -> web.Response:
        return web.json_response(state.dispatcher.deliveries)

    async def clear_deliveries(request: web.Request) -> web.Response:
        state.dispatcher.deliveries.clear()
        return web.json_response({"cleared": True})

    async def webhooks(request: web.Request) -> web.Response:
        out = []
        for hook in state.dispatcher.webhooks.values():
            item = hook.public()
            item["pending"] = sum(1 for i in state.dispatcher.queue if i.webhook_id == hook.id)
            out.append(item)
        return web.json_response(out)

    async def flush(request: web.Request) -> web.Response:
        timeout = float(request.query.get("timeout", "5"))
        idle = await state.dispatcher.wait_idle(timeout)
        return web.json_response({"idle": idle, "pending": state.dispatcher.pending()})

    async def raw_entities(request: web.Request) -> web.Response:
        return web.json_response(list(state.entities.get(request.match_info["entityType"], {}).values()))

    return [
        web.get("/_sim/webhook-deliveries", deliveries),
        web.delete("/_sim/webhook-deliveries", clear_deliveries),
        web.get("/_sim/webhooks", webhooks),
        web.post("/_sim/webhooks/flush", flush),
        web.get("/_sim/entities/{entityType}", raw_entities),
    ]


def _auth_middleware(state: EspoCRMState) -> Callable[..., Any]:
    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        try:
            state.authenticate(request)
            return await handler(request)
        except EspoError as exc:
            return exc.response()

    return middleware


def create_app(
    api_key: str,
    hmac_secret: str | None = None,
    basic: tuple[str, str] | None = None,
    seed: dict[str, Any] | None = None,
    *,
    webhook_debounce: float = 0.05,
    webhook_batch_size: int = MAX_BATCH_SIZE,
    webhook_attempts: int = 4,
    webhook_retry_interval: float = 2.0,
    webhook_timeout: float = 10.0,
    doc_hooks: bool = True,
    links: Iterable[LinkDef] = DEFAULT_LINKS,
) -> web.Application:
    """The EspoCRM simulator app; serve it with simulators.runner.start_app."""
    dispatcher = WebhookDispatcher(
        debounce=webhook_debounce,
        batch_size=webhook_batch_size,
        max_attempts=webhook_attempts,
        retry_interval=webhook_retry_interval,
        timeout=webhook_timeout,
    )
    state = EspoCRMState(api_key, hmac_secret, basic, dispatcher=dispatcher, links=links, doc_hooks=doc_hooks)
    state.initial_seed = seed
    if seed:
        state.load_seed(seed)

    def on_reset(reseed: bool) -> None:
        if reseed and state.initial_seed:
            state.load_seed(state.initial_seed)

    app = make_app(state, on_reset=on_reset, on_seed=state.load_seed)
    app.middlewares.append(_auth_middleware(state))
    app.add_routes(_admin_routes(state))
    app.add_routes(_routes(state))

    async def lifecycle(app: web.Application) -> Any:
        await dispatcher.start()
        yield
        await dispatcher.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


def state_of(app: web.Application) -> EspoCRMState:
    """The simulator state behind an app made by create_app."""
    state = app[STATE_KEY]
    assert isinstance(state, EspoCRMState)
    return state


