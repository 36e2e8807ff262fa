"""Builders for the steps that differ only in a name, a path, a topic or a method.

The firm's guide names one step file per webhook/action, each with its own `config`; where
the logic is the same (the EspoCRM webhooks, the Advoware proxy methods, the cron steps' one
run per slot) the step file calls a builder from here and binds the `config` and `handler`
it returns, so motia discovers every step as before (`config` and `handler` module
attributes). Settings and the Redis client are looked up when a handler runs, never when the
step is imported, so a test may patch them first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any

from motia import cron, http, queue
from pydantic import BaseModel

from services.documents.events import (
    TOPIC_DOCUMENT_UPDATE,
    document_webhook_events,
    link_item_key,
    link_webhook_events,
)
from services.parties.events import entity_type_of, webhook_events
from services.platform.models import EntityAction, EntityType, LinkWebhookItem, WebhookItem, endpoint_webhook_item
from services.proxy.advoware import PROXY_PATH, ProxyMethod
from src.glue.proxy import handle_proxy_request
from src.glue.webhook import accept_webhook

Handler = Callable[[Any, Any], Awaitable[Any]]
ToEvents = Callable[[Any, str | None], list[dict[str, Any]]]

PARTY_ACTIONS = (EntityAction.CREATE, EntityAction.UPDATE, EntityAction.DELETE)


def step_config(name: str, description: str, flow: str, triggers: list[Any], enqueues: list[str]) -> dict[str, Any]:
    """One step's motia `config` (one flow per step, as everywhere in this project)."""
    return {"name": name, "description": description, "flows": [flow], "triggers": triggers, "enqueues": enqueues}


def webhook_handler(
    routes: Mapping[str, ToEvents],
    *,
    model: type[BaseModel] | Mapping[str, type[BaseModel]] = WebhookItem,
    key: Callable[[Any], Any] | None = None,
) -> Handler:
    """The handler of an EspoCRM webhook step: src.glue.webhook.accept_webhook with the
    `to_events` (and the item `model`, when given per path) of the route that fired
    (`ctx.trigger.path`; a step with one route uses it whatever the path)."""
    only = next(iter(routes)) if len(routes) == 1 else None
    extra: dict[str, Any] = {} if key is None else {"key": key}

    async def handler(request: Any, ctx: Any) -> Any:
        from services.platform import settings

        path = only if only is not None else ctx.trigger.path
        item_model = model[path] if isinstance(model, Mapping) else model
        return await accept_webhook(request, ctx, settings=settings.get_settings(), model=item_model, to_events=routes[path], **extra)

    return handler


def party_webhook_step(entity: str, topic: str) -> tuple[dict[str, Any], Handler]:
    """`POST /vmh/webhook/{entity}/{create,update,delete}` (entity `beteiligte` or
    `bankverbindungen`): one `{topic}.{action}` sync event per record
    (services.parties.events.webhook_events); items in EspoCRM's or the guide's manual-test
    shape, bound to the route's entity type and action (services.platform.models.EndpointWebhookItem)."""
    routes = {f"/vmh/webhook/{entity}/{a.value}": webhook_events(topic, a) for a in PARTY_ACTIONS}
    models = {f"/vmh/webhook/{entity}/{a.value}": endpoint_webhook_item(entity_type_of(topic), a) for a in PARTY_ACTIONS}
    config = step_config(
        f"VMH {entity.title()} Webhook",
        f"Receives EspoCRM C{entity.title()} create/update/delete webhooks and queues sync events",
        "vmh-beteiligte",
        [http("POST", path) for path in routes],
        [f"{topic}.{a.value}" for a in PARTY_ACTIONS],
    )
    return config, webhook_handler(routes, model=models)


def document_webhook_step(action: EntityAction, topic: str) -> tuple[dict[str, Any], Handler]:
    """`POST /vmh/webhook/document/{action}`: one `topic` event per document
    (services.documents.events.document_webhook_events); items bound to CDokumente and the
    action (services.platform.models.EndpointWebhookItem)."""
    config = step_config(
        f"VMH Document {action.value.title()} Webhook",
        f"Receives EspoCRM CDokumente.{action.value} webhooks and queues the document sync",
        "vmh-documents",
        [http("POST", f"/vmh/webhook/document/{action.value}")],
        [topic],
    )
    model = endpoint_webhook_item(EntityType.DOKUMENTE, action)
    return config, webhook_handler({f"/vmh/webhook/document/{action.value}": document_webhook_events(action)}, model=model)


def link_webhook_step(action: EntityAction) -> tuple[dict[str, Any], Handler]:
    """`POST /vmh/webhook/entity/{link,unlink}`: per item the document's sync, which asks for
    the entity's collection itself (services.documents.events.link_webhook_events)."""
    path = f"/vmh/webhook/entity/{action.value}"
    config = step_config(
        f"VMH Entity {action.value.title()} Webhook",
        f"Receives CDokumente.{action.value} webhooks: document sync",
        "vmh-documents",
        [http("POST", path)],
        [TOPIC_DOCUMENT_UPDATE],
    )
    return config, webhook_handler({path: link_webhook_events(action)}, model=LinkWebhookItem, key=link_item_key)


def proxy_step(method: ProxyMethod) -> tuple[dict[str, Any], Handler]:
    """`{method} /advoware/proxy?endpoint=<path>`: src.glue.proxy.handle_proxy_request."""
    config = step_config(
        f"Advoware Proxy {method.value}",
        f"Forwards {method.value} requests to the Advoware API with the cached bearer token (caller needs the proxy token)",
        "advoware-proxy",
        [http(method.value, PROXY_PATH)],
        [],
    )

    async def handler(request: Any, ctx: Any) -> Any:
        return await handle_proxy_request(method, request, ctx)

    return config, handler


def queue_step(
    topics: list[str], run: Handler, *, name: str, description: str, flow: str, enqueues: list[str]
) -> tuple[dict[str, Any], Handler]:
    """A queue step on `topics` whose handler awaits `run(data, ctx)` (a src.glue.queue_handlers
    function) and returns None."""
    config = step_config(name, description, flow, [queue(topic) for topic in topics], enqueues)

    async def handler(data: Any, ctx: Any) -> None:
        await run(data, ctx)

    return config, handler


def cron_config(schedule: str, *, name: str, description: str, flow: str, enqueues: list[str]) -> dict[str, Any]:
    """A cron step's `config`."""
    return step_config(name, description, flow, [cron(schedule)], enqueues)


def once_per_slot(step: str, schedule: str) -> Callable[[Handler], Handler]:
    """Wrap a cron handler so it runs once per schedule slot across engines
    (services.platform.ledger.cron.run_once_per_slot); a slot already claimed returns None."""

    def wrap(run: Handler) -> Handler:
        @wraps(run)
        async def handler(input_: Any, ctx: Any) -> Any:
            from services.platform.container import get_redis_client
            from services.platform.ledger.cron import run_once_per_slot

            if not await run_once_per_slot(get_redis_client(), step, schedule, ctx):
                return None
            return await run(input_, ctx)

        return handler

    return wrap
