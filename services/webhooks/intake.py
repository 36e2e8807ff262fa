"""Receiving EspoCRM webhooks: authenticate, validate, de-duplicate, then queue.

Framework-free decisions (`authenticate`, `parse_json_body`, `split_batch`,
`engine_streams_raw_body`); the step glue that applies them with the request and ctx
(`accept_webhook`, reading the raw body, marking, enqueueing, answering) is
src/glue/webhook.py. The rules:

1. Authentication, by `ESPOCRM_WEBHOOK_SECRETS` (EspoCRM's `Signature`, or the legacy
   `X-Signature`, over the raw body) and/or `ESPOCRM_WEBHOOK_TOKEN` (the webhook URL's
   `?token=`): every configured credential must be present and valid — with secrets set a
   token never stands in for the signature, and with both set both are required. With
   neither the endpoints are open: sandbox only (start-up warns), production refuses to
   start. Failure → 401, nothing queued.
2. Validation: not JSON, not an array/object, more than 50 items, or no valid item →
   400 with the reason. Valid items are queued one event each, duplicates in one batch
   collapse; invalid items are reported as `rejected: [{index, error}]`.
3. Every accepted item is marked in the sync ledger (services.platform.ledger) in ONE round trip
   before the answer; only then are the events enqueued, tagged with their mark. The
   engine's queue may lose them (semantics rows Q5, R1): the marks are the record, and
   the sweeper re-enqueues what was not handled. When the ledger cannot be written the
   answer is 503 and nothing is enqueued (EspoCRM retries the webhook); an enqueue that
   fails after the marks are written is logged and left to the sweeper.
4. Replays (signature mode): the same script that writes the marks records the signed body,
   `{LEDGER_KEY_PREFIX}:once:replay:{replay_key}` for ESPOCRM_WEBHOOK_REPLAY_SECONDS (default
   600); the same body (same webhook id and bytes, whichever signature header or endpoint it
   comes with) within that time → 409, nothing marked or queued. The record is written only
   together with the marks, so EspoCRM's retry after our 503 passes. EspoCRM takes a 409 as
   a permanent failure of those queue items (no retry): right, since that body was accepted.
   Its payload has no timestamp, so an update that sets exactly the attributes and values of
   one sent within the window (A → B → A) is refused too; the reconciler crons catch it up.
5. The answer: `200 {"accepted": n, "rejected": [...]}`.

Raw body (semantics rows H1, H2; iii v0.8.3 engine/src/modules/rest_api/views.rs 247-289):
for a content type containing `application/json` the engine hands over only the parsed,
key-sorted `body` and keeps the request channel open and EMPTY until the handler returns,
so reading it would block until the request times out (504). The channel is therefore
read only when the engine gave no parsed body and the content type is not JSON: then it
streams the exact bytes (as behind the shipped nginx config, which forwards webhooks as
`application/octet-stream`). With a parsed body the signature is checked against
EspoCRM's encoding of it, which only matches when key order survived.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from services.clients.espocrm_webhooks import MAX_BATCH_SIZE, php_json_encode, verify_signature
from services.platform.auth import lower_headers, token_matches
from services.platform.rejected import Rejected
from services.platform.settings import Settings, WebhookAuthMode
from services.proxy.http import engine_parsed_json

TOKEN_QUERY_PARAM = "token"
"""`ESPOCRM_WEBHOOK_TOKEN` travels in the webhook URL (`.../vmh/webhook/document/create?token=...`).
EspoCRM's sender (application/Espo/Core/Webhook/Sender.php, `prepareRequest`) sends only
Content-Type, Content-Length, Signature and X-Signature: it cannot send a token header."""

PROXIED_TOKEN_HEADER = "x-auth-token"
"""The same token as nginx hands it on (deploy/nginx/bitbylaw-motia-locations.conf): nginx moves
`?token=` into this header and drops the query string, because the real engine records the
query string in its HTTP span (`url.query`, `url.full`: engine/src/modules/rest_api/views.rs
dynamic_handler) and redacts this header in its debug log (views.rs SENSITIVE_HEADERS)."""


class WebhookRejected(Rejected):
    """The whole webhook request is refused (nothing queued)."""


@dataclass(frozen=True)
class Credentials:
    """What authenticated a webhook: the verified webhook id and, in signature mode, the replay
    key: sha256 over the webhook id and the exact bytes the signature covers."""

    webhook_id: str | None = None
    replay_key: str | None = None


@dataclass
class Batch:
    """What a webhook body yields: valid items (first occurrence per key) and rejects."""

    items: list[Any] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0


def _given_token(query: Mapping[str, Any] | None, h: Mapping[str, str]) -> str | None:
    """The token the request carries: the URL's `token` parameter, else nginx's header.

    A repeated `token` parameter counts only when every copy is the same.
    """
    value = (query or {}).get(TOKEN_QUERY_PARAM)
    if isinstance(value, (list, tuple)):
        value = value[0] if value and all(v == value[0] for v in value) else ""
    if value is None:
        value = h.get(PROXIED_TOKEN_HEADER)
    return None if value is None else str(value)


def authenticate(
    headers: Mapping[str, Any],
    raw: bytes | None,
    body: Any,
    settings: Settings,
    query: Mapping[str, Any] | None = None,
) -> Credentials:
    """Check the request's credentials (rule 1 of the module docstring).

    The token (`ESPOCRM_WEBHOOK_TOKEN`, required whenever configured): the `token` query
    parameter (or nginx's `X-Auth-Token`, see PROXIED_TOKEN_HEADER), compared in constant time,
    never logged nor put into the refusal. The signature (`ESPOCRM_WEBHOOK_SECRETS`, required
    whenever configured): EspoCRM's `Signature` (or legacy `X-Signature`) over the raw body, or
    over EspoCRM's encoding of the engine-parsed body. Raises WebhookRejected(401) when a
    configured credential is missing or wrong.
    """
    h = lower_headers(headers)
    espo = settings.espocrm
    if settings.webhook_auth_mode == WebhookAuthMode.OPEN:
        return Credentials()
    if espo.webhook_token is not None:
        given = _given_token(query, h)
        if not token_matches(given, espo.webhook_token.get_secret_value()):
            raise WebhookRejected(401, f"missing or invalid webhook token (?{TOKEN_QUERY_PARAM}= in the webhook URL)")
    if not espo.webhook_secrets:
        return Credentials()
    secrets = {k: v.get_secret_value() for k, v in espo.webhook_secrets.items()}
    if "signature" not in h and "x-signature" not in h:
        raise WebhookRejected(401, "missing webhook signature (Signature header)")
    # The exact bytes, or behind an engine that parsed the JSON for us EspoCRM's own encoding of it.
    signed = raw if raw else (php_json_encode(body) if body is not None else None)
    webhook_id = verify_signature(h, signed, secrets) if signed is not None else None
    if webhook_id is None or signed is None:
        raise WebhookRejected(401, "invalid webhook signature")
    replay_key = hashlib.sha256(webhook_id.encode("utf-8") + b"\n" + signed).hexdigest()
    return Credentials(webhook_id, replay_key)


def parse_json_body(raw: bytes | None, parsed: Any) -> Any:
    """The request's JSON value, from the raw bytes when we have them."""
    if raw:
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebhookRejected(400, f"body is not valid JSON: {exc}") from None
    if parsed is None:
        raise WebhookRejected(400, "body must be JSON (Content-Type: application/json)")
    return parsed


def split_batch(
    payload: Any,
    model: type[BaseModel],
    key: Callable[[Any], Any] = lambda item: item.id,
    *,
    max_items: int = MAX_BATCH_SIZE,
) -> Batch:
    """Validate each item on its own; raise WebhookRejected(400) when nothing is usable."""
    items: list[Any]
    if isinstance(payload, dict):
        items = [payload]
    elif isinstance(payload, list):
        items = payload
    else:
        raise WebhookRejected(400, f"body must be a JSON array of objects (or one object), got {type(payload).__name__}")
    if not items:
        raise WebhookRejected(400, "body is an empty array")
    if len(items) > max_items:
        raise WebhookRejected(400, f"body has {len(items)} items; EspoCRM sends at most {max_items}")
    batch = Batch()
    seen: set[Any] = set()
    for index, raw_item in enumerate(items):
        if not isinstance(raw_item, dict):
            batch.rejected.append({"index": index, "error": f"item must be an object, got {type(raw_item).__name__}"})
            continue
        try:
            item = model.model_validate(raw_item)
        except PydanticValidationError as exc:
            msgs = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ())) or 'item'}: {e.get('msg', 'invalid')}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            batch.rejected.append({"index": index, "error": msgs})
            continue
        k = key(item)
        if k in seen:
            batch.duplicates += 1
            continue
        seen.add(k)
        batch.items.append(item)
    if not batch.items:
        raise WebhookRejected(400, "no valid item in body: " + "; ".join(f"[{r['index']}] {r['error']}" for r in batch.rejected))
    return batch


def engine_streams_raw_body(request: Any) -> bool:
    """Whether the engine streams this request's bytes into the request channel (row H2):
    only when it gave no parsed `body` and the content type is not JSON (row H1: then the
    channel stays open and empty until the handler returns; never read it). The engine's test
    (services.proxy.http.engine_parsed_json, views.rs 251 at iii/v0.8.3) is case-sensitive, so
    `Application/JSON` is streamed and read here."""
    if getattr(request, "body", None) is not None:
        return False
    return not engine_parsed_json(getattr(request, "headers", None))
