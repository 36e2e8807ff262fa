"""What EspoCRM's webhook sender puts on the wire: event names, body bytes, signatures.

The simulator's own copy of the vendor's behaviour, never imported from the project, so
that a mistake in the project's verifier cannot be mirrored here. Source:
`application/Espo/Core/Webhook/Sender.php` (EspoCRM master):

- body: `Json::encode($dataList)` = PHP `json_encode` with default flags (compact, `\\/`
  for `/`, non-ASCII as `\\uXXXX`), a JSON array of at most 50 items (external-apis.md §1);
- `Signature: base64_encode("$webhookId:" . hash_hmac('sha256', $payload, $secretKey))`
  (lower-case hex digest);
- `X-Signature: base64_encode($webhookId . ':' . hash_hmac('sha256', $payload, $secretKey, true))`
  (raw binary digest; "@todo Remove in v11.0").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_BATCH_SIZE = 50
SIGNATURE_HEADER = "Signature"
LEGACY_SIGNATURE_HEADER = "X-Signature"


class WebhookAction(StrEnum):
    """Event kinds: EspoCRM core's four, plus the firm's link notifications [I]."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    FIELD_UPDATE = "fieldUpdate"
    LINK = "link"
    UNLINK = "unlink"


@dataclass(frozen=True)
class WebhookEvent:
    """`{EntityType}.{action}` or `{EntityType}.fieldUpdate.{field}`."""

    entity_type: str
    action: WebhookAction
    field: str | None = None

    @classmethod
    def parse(cls, event: str) -> WebhookEvent:
        """Parse an event name; ValueError when it is not one EspoCRM accepts."""
        entity_type, _, rest = event.partition(".")
        if not entity_type or not entity_type[0].isalpha() or not rest:
            raise ValueError(f"Malformed webhook event {event!r}: expected '<Entity>.<action>'")
        action_name, _, field = rest.partition(".")
        if action_name not in {a.value for a in WebhookAction}:
            valid = ", ".join(a.value for a in WebhookAction)
            raise ValueError(f"Unknown webhook action in {event!r}; valid: {valid}")
        action = WebhookAction(action_name)
        if action is WebhookAction.FIELD_UPDATE:
            if not field or "." in field:
                raise ValueError(f"Malformed webhook event {event!r}: expected '<Entity>.fieldUpdate.<field>'")
            return cls(entity_type, action, field)
        if field or rest.endswith("."):
            raise ValueError(f"Malformed webhook event {event!r}")
        return cls(entity_type, action)

    def __str__(self) -> str:
        text = f"{self.entity_type}.{self.action.value}"
        return f"{text}.{self.field}" if self.field else text


def php_json_encode(value: Any) -> bytes:
    """PHP `json_encode($value)` with default flags (what `Json::encode` sends)."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("/", "\\/").encode("ascii")


def _hmac_sha256(secret_key: str, payload: bytes) -> bytes:
    return hmac.new(secret_key.encode("utf-8"), payload, hashlib.sha256).digest()


def sign_body(webhook_id: str, secret_key: str, payload: bytes) -> str:
    """`Signature` header: base64(webhookId + ':' + hex(hmac_sha256(payload, secret)))."""
    return base64.b64encode(f"{webhook_id}:{_hmac_sha256(secret_key, payload).hex()}".encode()).decode("ascii")


def legacy_signature(webhook_id: str, secret_key: str, payload: bytes) -> str:
    """Legacy `X-Signature` header: base64(webhookId + ':' + raw hmac_sha256 digest)."""
    return base64.b64encode(webhook_id.encode() + b":" + _hmac_sha256(secret_key, payload)).decode("ascii")
