"""EspoCRM outgoing webhooks: body encoding, signatures and secret configuration.

EspoCRM POSTs a JSON array (`json_encode`, PHP defaults) of up to 50 items and signs the
exact body bytes:

- `Signature: base64(webhookId + ":" + hex(HMAC-SHA256(secretKey, body)))` (v9+)
- `X-Signature: base64(webhookId + ":" + raw HMAC-SHA256 digest)` (legacy, until v11)

Shared by the EspoCRM simulator (which sends) and our webhook endpoints (which verify).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SIGNATURE_HEADER = "Signature"
LEGACY_SIGNATURE_HEADER = "X-Signature"
MAX_BATCH_SIZE = 50


class WebhookAction(StrEnum):
    """The part of a webhook event after the entity type."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    FIELD_UPDATE = "fieldUpdate"
    # Not EspoCRM core: the project's own link notifications (see the simulator).
    LINK = "link"
    UNLINK = "unlink"


@dataclass(frozen=True)
class WebhookEvent:
    """A parsed event name such as `CDokumente.update` or `Account.fieldUpdate.status`."""

    entity_type: str
    action: WebhookAction
    field: str | None = None

    @classmethod
    def parse(cls, event: str) -> WebhookEvent:
        """Parse an event name; raises ValueError when it is malformed."""
        parts = event.split(".")
        if len(parts) < 2 or not parts[0] or not parts[0][0].isalpha():
            raise ValueError(f"Malformed webhook event {event!r}: expected '<Entity>.<action>'")
        try:
            action = WebhookAction(parts[1])
        except ValueError:
            valid = ", ".join(a.value for a in WebhookAction)
            raise ValueError(f"Unknown webhook action in {event!r}; valid: {valid}") from None
        if action is WebhookAction.FIELD_UPDATE:
            if len(parts) != 3 or not parts[2]:
                raise ValueError(f"Malformed webhook event {event!r}: expected '<Entity>.fieldUpdate.<field>'")
            return cls(parts[0], action, parts[2])
        if len(parts) != 2:
            raise ValueError(f"Malformed webhook event {event!r}")
        return cls(parts[0], action)

    def __str__(self) -> str:
        base = f"{self.entity_type}.{self.action.value}"
        return f"{base}.{self.field}" if self.field else base


def php_json_encode(obj: Any) -> bytes:
    """Encode like PHP `json_encode($x)` with default flags.

    Compact separators, non-ASCII as `\\uXXXX` (surrogate pairs beyond the BMP) and
    `/` escaped as `\\/`. A `/` can only occur inside JSON strings, so replacing it in
    the output is exact. NaN/Infinity are rejected, as PHP does.
    """
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("/", "\\/").encode("ascii")


def _digest(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()


def sign_body(webhook_id: str, secret: str, body: bytes) -> str:
    """The `Signature` header value for a body."""
    token = f"{webhook_id}:{_digest(secret, body).hex()}"
    return base64.b64encode(token.encode("utf-8")).decode("ascii")


def legacy_signature(webhook_id: str, secret: str, body: bytes) -> str:
    """The legacy `X-Signature` header value (raw binary digest)."""
    token = webhook_id.encode("utf-8") + b":" + _digest(secret, body)
    return base64.b64encode(token).decode("ascii")


def _split_token(value: str) -> tuple[str, bytes] | None:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    webhook_id, sep, rest = raw.partition(b":")
    if not sep or not webhook_id:
        return None
    try:
        return webhook_id.decode("utf-8"), rest
    except UnicodeDecodeError:
        return None


def verify_signature(headers: Mapping[str, str], body: bytes, secrets: Mapping[str, str]) -> str | None:
    """The id of the webhook whose secret signed `body`, or None.

    `headers` must have lower-case keys; either `signature` (hex digest) or the legacy
    `x-signature` (raw digest) is accepted. Comparisons are constant-time.
    """
    by_hex = _signer(
        headers.get("signature"),
        secrets,
        lambda secret, given: hmac.compare_digest(_digest(secret, body).hex().encode("ascii"), given.lower()),
    )
    return by_hex or _signer(
        headers.get("x-signature"), secrets, lambda secret, given: hmac.compare_digest(_digest(secret, body), given)
    )


def _signer(value: str | None, secrets: Mapping[str, str], matches: Callable[[str, bytes], bool]) -> str | None:
    """The webhook id named in the header `value` when its secret `matches` the given digest."""
    parsed = _split_token(value) if value else None
    if parsed is None:
        return None
    webhook_id, given = parsed
    secret = secrets.get(webhook_id)
    return webhook_id if secret is not None and matches(secret, given) else None


def parse_webhook_secrets(value: str) -> dict[str, str]:
    """Parse `"id1:secret1,id2:secret2"` into `{id: secret}`.

    Blank input gives `{}`; blank entries (a trailing comma) are ignored. Raises
    ValueError naming the bad entry when one has no `:`, an empty id or secret, or
    repeats an id with a different secret.
    """
    out: dict[str, str] = {}
    for position, entry in enumerate((value or "").split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        webhook_id, sep, secret = entry.partition(":")
        webhook_id, secret = webhook_id.strip(), secret.strip()
        if not sep:
            raise ValueError(
                f"Webhook secret entry {position} has no ':' (expected 'webhookId:secretKey', "
                "entries separated by commas)"
            )
        if not webhook_id:
            raise ValueError(f"Webhook secret entry {position} has an empty webhook id")
        if not secret:
            raise ValueError(f"Webhook secret entry {position} (webhook {webhook_id!r}) has an empty secret")
        if webhook_id in out and out[webhook_id] != secret:
            raise ValueError(f"Webhook id {webhook_id!r} is listed twice with different secrets")
        out[webhook_id] = secret
    return out
