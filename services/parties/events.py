"""What the party sync receives and sends: its queue topics, the entity-lock step names,
the `{"topic", "data"}` events it exchanges and the webhook `to_events` builders.

Rules: every CBeteiligte / CBankverbindungen webhook item yields one sync event for its
record (the handler reads both systems itself, so an update's attributes are only noted as
`changed_fields`); follow-ups (a party's bank accounts) and cron finds are sync events too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.platform.models import EntityAction, EntityType, SyncEvent, SyncSource

PARTY_LOCK_STEP = "beteiligte_sync"
BANK_LOCK_STEP = "bankverbindungen_sync"

TOPIC_PARTY = "vmh.beteiligte"
TOPIC_BANK = "vmh.bankverbindungen"


def topic(base: str, action: EntityAction) -> str:
    return f"{base}.{action.value}"


def entity_type_of(base: str) -> EntityType:
    """The entity type whose events go to the topics under `base` (TOPIC_PARTY or TOPIC_BANK)."""
    return EntityType.BETEILIGTE if base == TOPIC_PARTY else EntityType.BANKVERBINDUNGEN


def sync_event(
    base: str, entity_id: str, action: EntityAction, source: SyncSource, reason: str | None = None
) -> dict[str, Any]:
    """A `{"topic", "data"}` queue event for one entity."""
    ev = SyncEvent(entity_type=entity_type_of(base), entity_id=entity_id, action=action, source=source, reason=reason)
    return {"topic": topic(base, action), "data": ev.to_queue()}


def webhook_events(base: str, action: EntityAction) -> Callable[[Any, str | None], list[dict[str, Any]]]:
    """`to_events` for services.webhooks.intake.accept_webhook on a CBeteiligte (`base` =
    TOPIC_PARTY) or CBankverbindungen (TOPIC_BANK) webhook: one sync event per record; the
    handler reads both systems itself, so the body's attributes are only noted as changed."""

    def to_events(item: Any, webhook_id: str | None) -> list[dict[str, Any]]:
        event = sync_event(base, item.id, action, SyncSource.WEBHOOK)
        event["data"]["webhook_id"] = webhook_id
        event["data"]["changed_fields"] = sorted(item.attributes) if action is EntityAction.UPDATE else []
        return [event]

    return to_events
