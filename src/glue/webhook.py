"""The EspoCRM webhook step's glue: read the request, apply services.webhooks.intake's
decisions, mark the items in the sync ledger, enqueue, answer.

The rules (authentication, validation, mark before the 200, 503 when the ledger is down,
409 for a replayed signed body, when the raw body is read: semantics rows H1/H2) are
services.webhooks.intake's docstring.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from motia import ApiResponse
from pydantic import BaseModel

from services.platform.ledger import LedgerError, Once, OnceHeld, enqueue_marked
from services.platform.ledger.glue import patiently
from services.platform.settings import Settings
from services.webhooks.intake import (
    WebhookRejected,
    authenticate,
    engine_streams_raw_body,
    parse_json_body,
    split_batch,
)
from src.glue.http import json_response

WEBHOOK_LEDGER_PATIENCE_SECONDS = 3.0
"""How long a webhook waits for an unreachable sync ledger before answering 503."""
REPLAY_STATUS = 409
"""The answer to a signed body accepted before within ESPOCRM_WEBHOOK_REPLAY_SECONDS."""


async def read_raw_body(request: Any) -> bytes | None:
    """The exact request bytes from the request channel, or None: when the engine parsed the
    body (JSON; see services.webhooks.intake.engine_streams_raw_body) the channel is not
    touched at all."""
    if not engine_streams_raw_body(request):
        return None
    reader = getattr(request, "request_body", None)
    if reader is None or not hasattr(reader, "read_all"):
        return None
    try:
        raw = await reader.read_all()
    except Exception:  # noqa: BLE001 - an engine without raw bodies: fall back to the parsed body
        return None
    return raw or None


async def accept_webhook(
    request: Any,
    ctx: Any,
    *,
    settings: Settings,
    model: type[BaseModel],
    to_events: Callable[[Any, str | None], list[dict[str, Any]]],
    key: Callable[[Any], Any] = lambda item: item.id,
    ledger: Any = None,
) -> ApiResponse:
    """The whole webhook step: authenticate, validate, mark every item in the sync ledger,
    enqueue the tagged events, answer (see services.webhooks.intake's docstring).

    `to_events(item, webhook_id)` returns the `{"topic", "data"}` events for one item.
    `ledger` defaults to the worker's (services.platform.container.get_ledger()).
    """
    try:
        raw = await read_raw_body(request)
        credentials = authenticate(request.headers, raw, getattr(request, "body", None), settings, query=getattr(request, "query_params", None))
        webhook_id = credentials.webhook_id
        payload = parse_json_body(raw, getattr(request, "body", None))
        batch = split_batch(payload, model, key)
    except WebhookRejected as exc:
        ctx.logger.warn(f"webhook refused: {exc.reason}", {"status": exc.status})
        return json_response(exc.status, exc.body())
    events = [event for item in batch.items for event in to_events(item, webhook_id)]
    if ledger is None:
        from services.platform.container import get_ledger

        ledger = get_ledger()
    replay_seconds = settings.espocrm.webhook_replay_seconds
    # The replay record goes with the marks (one script): a 503 leaves none, so EspoCRM's retry passes.
    once = None
    if credentials.replay_key and replay_seconds > 0:
        once = Once(f"replay:{credentials.replay_key}", secrets.token_hex(8), replay_seconds)
    try:
        # A Redis restart takes a moment: wait that long, well inside EspoCRM's 10 s timeout.
        marks = await patiently(lambda: ledger.mark_events(events, once=once), patience=WEBHOOK_LEDGER_PATIENCE_SECONDS)
    except OnceHeld:
        ctx.logger.warn("webhook refused: replay of a signed body accepted before",
                        {"status": REPLAY_STATUS, "webhook_id": webhook_id, "replay_seconds": replay_seconds})
        return json_response(REPLAY_STATUS, {"error": f"replayed webhook: this signed body was accepted within the last "
                                                      f"{replay_seconds} s; nothing was queued"})
    except LedgerError as exc:
        ctx.logger.error(f"webhook refused: the sync ledger is unavailable: {exc}", {"status": 503, "items": len(batch.items)})
        return json_response(503, {"error": "sync ledger unavailable; nothing was accepted, retry later"})
    queued = await enqueue_marked(ctx, marks)
    ctx.logger.info(
        f"webhook accepted: {len(batch.items)} item(s), {len(marks)} marked, {queued} event(s) queued",
        {"rejected": len(batch.rejected), "duplicates": batch.duplicates, **({"webhook_id": webhook_id} if webhook_id else {})},
    )
    return json_response(200, {"accepted": len(batch.items), "rejected": batch.rejected})
