"""The value types of the settings: modes, rules and the URL redaction used in their dumps."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from enum import Enum, StrEnum
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel


class AppMode(StrEnum):
    """Where the services point: local simulators or the real systems."""

    SANDBOX = "sandbox"
    PRODUCTION = "production"


class WebhookAuthMode(StrEnum):
    """How incoming EspoCRM webhooks are authenticated."""

    SIGNATURE = "signature"  # ESPOCRM_WEBHOOK_SECRETS: verify the `Signature` header per webhook id
    TOKEN = "token"  # ESPOCRM_WEBHOOK_TOKEN: a shared token in the webhook URL (?token=), for setups without secrets
    OPEN = "open"  # neither configured: anyone who can reach the URL may post


class ConflictRule(StrEnum):
    """Which side wins when an appointment changed on both sides since the last sync."""

    ADVOWARE_WINS = "advoware_wins"
    NEWEST_WINS = "newest_wins"


class CollectionRule(NamedTuple):
    """An entity gets an xAI collection when `record[field]` equals `value`."""

    field: str
    value: str

    def matches(self, record: Any) -> bool:
        """Whether a record (mapping or pydantic model) satisfies the rule.

        Booleans compare case-insensitively with "true"/"false"; enums by value;
        everything else by `str()`; a missing field never matches.
        """
        actual = _field_of(record, self.field)
        if actual is None:
            return False
        if isinstance(actual, bool):
            return str(actual).lower() == self.value.lower()
        if isinstance(actual, Enum):
            actual = actual.value
        return str(actual) == self.value


def _field_of(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    if isinstance(record, BaseModel):
        if name in type(record).model_fields:
            return getattr(record, name)
        return (record.model_extra or {}).get(name)
    return getattr(record, name, None)


def redact_url(url: str) -> str:
    """`scheme://user:secret@host/…` → `scheme://user:***@host/…` (unchanged without a password)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def is_loopback_host(host: str) -> bool:
    """`localhost` (or `*.localhost`), 127.0.0.0/8 or ::1 (brackets allowed): only this machine
    reaches it. `0.0.0.0`, `::` and every other name or address are not loopback."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
