"""Webhook items bound to an endpoint (services.platform.models.EndpointWebhookItem): EspoCRM's
shape and the guide's manual-test shapes, the entity type and action checked against the
endpoint, through the intake's batch split (services.webhooks.intake.split_batch)."""

from __future__ import annotations

from typing import Any

import pytest

from services.documents.events import document_webhook_events
from services.parties.events import TOPIC_PARTY, webhook_events
from services.platform.models import EntityAction, EntityType, endpoint_webhook_item
from services.webhooks.intake import WebhookRejected, split_batch

PARTY_CREATE = endpoint_webhook_item(EntityType.BETEILIGTE, EntityAction.CREATE)
PARTY_UPDATE = endpoint_webhook_item(EntityType.BETEILIGTE, EntityAction.UPDATE)
BANK_CREATE = endpoint_webhook_item(EntityType.BANKVERBINDUNGEN, EntityAction.CREATE)
DOC_CREATE = endpoint_webhook_item(EntityType.DOKUMENTE, EntityAction.CREATE)
GUIDE_PARTY = {"entity_type": "CBeteiligte", "entity_id": "abc123", "action": "create"}
GUIDE_DOCUMENT = [{"id": "test123", "entityType": "CDokumente"}]


def test_the_guides_party_body_is_one_item_for_its_id() -> None:
    batch = split_batch(GUIDE_PARTY, PARTY_CREATE)
    [item] = batch.items
    assert item.id == "abc123" and item.attributes == {} and batch.rejected == []
    [event] = webhook_events(TOPIC_PARTY, EntityAction.CREATE)(item, None)
    assert event["topic"] == "vmh.beteiligte.create"
    assert (event["data"]["entity_type"], event["data"]["entity_id"], event["data"]["action"]) == ("CBeteiligte", "abc123", "create")


def test_the_guides_document_body_is_one_item() -> None:
    [item] = split_batch(GUIDE_DOCUMENT, DOC_CREATE).items
    assert item.id == "test123" and item.attributes == {}
    [event] = document_webhook_events(EntityAction.CREATE)(item, None)
    assert event["topic"] == "vmh.document.create" and event["data"]["entity_id"] == "test123"


@pytest.mark.parametrize(
    ("model", "body", "reason"),
    [
        (BANK_CREATE, GUIDE_PARTY, "entity_type 'CBeteiligte' does not match this endpoint (CBankverbindungen)"),
        (PARTY_CREATE, {**GUIDE_PARTY, "action": "delete"}, "action 'delete' does not match this endpoint (create)"),
        (PARTY_CREATE, {**GUIDE_PARTY, "entity_type": "Nope"}, "entity_type 'Nope' does not match"),
        (DOC_CREATE, [{"id": "test123", "entityType": "CBeteiligte"}], "entity_type 'CBeteiligte' does not match this endpoint (CDokumente)"),
        (PARTY_CREATE, {"entity_type": "CBeteiligte", "action": "create"}, "id: Field required"),
        (PARTY_CREATE, {**GUIDE_PARTY, "entity_id": "bad id!"}, "id: String should match pattern"),
        (PARTY_CREATE, {**GUIDE_PARTY, "entityId": "other"}, "entity_id and entityId differ"),
    ],
)
def test_a_body_for_another_endpoint_is_refused_with_the_reason(model: Any, body: Any, reason: str) -> None:
    with pytest.raises(WebhookRejected) as exc:
        split_batch(body, model)
    assert exc.value.status == 400 and reason in exc.value.reason, exc.value.reason


def test_envelope_keys_are_no_attributes_and_espocrm_attributes_stay() -> None:
    [manual] = split_batch({"entity_type": "CBeteiligte", "entity_id": "abc123", "action": "update"}, PARTY_UPDATE).items
    assert manual.attributes == {}
    [event] = webhook_events(TOPIC_PARTY, EntityAction.UPDATE)(manual, None)
    assert event["data"]["changed_fields"] == []
    # EspoCRM's own shape: an attribute called `action` is the record's, not an envelope.
    [espo] = split_batch([{"id": "abc123", "action": "x", "name": "N"}], PARTY_UPDATE).items
    assert espo.attributes == {"action": "x", "name": "N"}
    # With an id, `entity_id` is an attribute too; the type is still checked.
    [both] = split_batch([{"id": "abc123", "entityType": "cbeteiligte", "entity_id": "zz"}], PARTY_UPDATE).items
    assert both.id == "abc123" and both.attributes == {"entity_id": "zz"}


def test_one_wrong_item_in_a_batch_is_listed_the_others_accepted() -> None:
    batch = split_batch([GUIDE_PARTY, {**GUIDE_PARTY, "entity_type": "CBankverbindungen", "entity_id": "x1"}, {"id": "r2"}], PARTY_CREATE)
    assert [i.id for i in batch.items] == ["abc123", "r2"]
    assert [r["index"] for r in batch.rejected] == [1] and "does not match" in batch.rejected[0]["error"]


def test_models_are_made_once_per_endpoint() -> None:
    assert endpoint_webhook_item(EntityType.BETEILIGTE, EntityAction.CREATE) is PARTY_CREATE
    assert PARTY_CREATE is not PARTY_UPDATE and PARTY_CREATE.endpoint_entity is EntityType.BETEILIGTE
