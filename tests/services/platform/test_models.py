"""services.platform.models: enum values, webhook validation, tolerant record models, SyncEvent round trip."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError as PydanticValidationError

from services.clients.errors import ValidationError
from services.platform.models import (
    LINKABLE_ENTITY_TYPES,
    DocumentRecord,
    EntityAction,
    EntityRecord,
    EntityType,
    FileStatus,
    LinkWebhookItem,
    SyncEvent,
    SyncSource,
    SyncStatus,
    WebhookItem,
    XAISyncStatus,
    coerce_enum,
    espo_date,
    espo_datetime,
    parse_espo_date,
    parse_espo_datetime,
)


def test_enum_values_match_the_guide() -> None:
    assert [m.value for m in FileStatus] == ["new", "changed", "synced"]
    assert [m.value for m in XAISyncStatus] == ["no_sync", "pending_sync", "clean", "unclean", "failed"]
    assert [m.value for m in EntityAction] == ["create", "update", "delete", "link", "unlink"]
    assert [m.value for m in EntityType] == ["CDokumente", "CBeteiligte", "Raeumungsklage", "Account", "CBankverbindungen"]
    assert [m.value for m in SyncStatus] == ["pending_sync", "clean", "failed", "conflict"]
    assert LINKABLE_ENTITY_TYPES == {EntityType.RAEUMUNGSKLAGE, EntityType.ACCOUNT, EntityType.BETEILIGTE}


@pytest.mark.parametrize("enum", [FileStatus, XAISyncStatus, EntityAction, EntityType, SyncStatus, SyncSource])
def test_enums_are_strings_that_print_their_value(enum: type) -> None:
    for member in enum:
        assert isinstance(member, str)
        assert str(member) == member.value
        assert f"{member}" == member.value
        assert member == member.value  # compares equal with the raw EspoCRM text


def test_coerce_enum() -> None:
    assert coerce_enum(XAISyncStatus, "clean") is XAISyncStatus.CLEAN
    assert coerce_enum(XAISyncStatus, "CLEAN") is XAISyncStatus.CLEAN
    assert coerce_enum(XAISyncStatus, "bogus") is None
    assert coerce_enum(XAISyncStatus, None) is None
    assert coerce_enum(XAISyncStatus, 3) is None


# --------------------------------------------------------------------------- webhooks


def test_webhook_item_accepts_ids_and_keeps_extra_attributes() -> None:
    item = WebhookItem.model_validate({"id": "65f1a2b3c4d5e6f70", "name": "Klage.pdf", "fileStatus": "new"})
    assert item.id == "65f1a2b3c4d5e6f70"
    assert item.attributes == {"name": "Klage.pdf", "fileStatus": "new"}
    assert WebhookItem.model_validate({"id": "a_b-C9"}).id == "a_b-C9"
    assert WebhookItem.model_validate({"id": "x" * 64}).id == "x" * 64


@pytest.mark.parametrize(
    "bad",
    [{}, {"id": ""}, {"id": None}, {"id": 123}, {"id": "x" * 65}, {"id": "a b"}, {"id": "../etc"}, {"id": "a:b"}, {"id": "ä"}],
)
def test_webhook_item_rejects_bad_ids(bad: dict) -> None:
    with pytest.raises(PydanticValidationError):
        WebhookItem.model_validate(bad)


def test_link_webhook_item_camel_and_snake_case() -> None:
    camel = LinkWebhookItem.model_validate({"entityType": "Raeumungsklage", "entityId": "r1", "documentId": "d1"})
    snake = LinkWebhookItem.model_validate({"entity_type": "Account", "entity_id": "a1", "document_id": "d2"})
    assert camel.entityType is EntityType.RAEUMUNGSKLAGE and camel.entityId == "r1" and camel.documentId == "d1"
    assert snake.entityType is EntityType.ACCOUNT and snake.entityId == "a1" and snake.documentId == "d2"
    item = LinkWebhookItem.model_validate({"entityType": "CBeteiligte", "entityId": "b1", "documentId": "d3"})
    assert item.entityType is EntityType.BETEILIGTE


@pytest.mark.parametrize(
    "bad",
    [
        {"entityType": "CDokumente", "entityId": "r1", "documentId": "d1"},  # not linkable
        {"entityType": "Contact", "entityId": "r1", "documentId": "d1"},  # unknown
        {"entityType": "Account", "entityId": "r 1", "documentId": "d1"},
        {"entityType": "Account", "entityId": "r1"},
    ],
)
def test_link_webhook_item_rejects(bad: dict) -> None:
    with pytest.raises(PydanticValidationError):
        LinkWebhookItem.model_validate(bad)


# --------------------------------------------------------------------------- datetimes


def test_espo_datetime_formats_in_utc() -> None:
    berlin = timezone(timedelta(hours=2))
    assert espo_datetime(datetime(2026, 3, 1, 14, 5, 9, 123456, tzinfo=berlin)) == "2026-03-01 12:05:09"
    assert espo_datetime(datetime(2026, 3, 1, 14, 5, 9)) == "2026-03-01 14:05:09"  # naive = UTC
    assert espo_date(date(2026, 1, 2)) == "2026-01-02"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01 12:05:09", datetime(2026, 3, 1, 12, 5, 9, tzinfo=UTC)),
        ("2026-03-01 12:05", datetime(2026, 3, 1, 12, 5, tzinfo=UTC)),
        ("2026-03-01T12:05:09Z", datetime(2026, 3, 1, 12, 5, 9, tzinfo=UTC)),
        ("2026-03-01T14:05:09+02:00", datetime(2026, 3, 1, 12, 5, 9, tzinfo=UTC)),
    ],
)
def test_parse_espo_datetime(text: str, expected: datetime) -> None:
    parsed = parse_espo_datetime(text)
    assert parsed == expected and parsed.tzinfo is not None
    assert parse_espo_datetime(espo_datetime(parsed)) == parsed.replace(microsecond=0)


@pytest.mark.parametrize("bad", ["", "yesterday", "2026-13-01 00:00:00", "2026-03-01"])
def test_parse_espo_datetime_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_espo_datetime(bad)


def test_parse_espo_date() -> None:
    assert parse_espo_date("1980-05-17") == date(1980, 5, 17)
    assert parse_espo_date("1980-05-17 00:00:00") == date(1980, 5, 17)
    with pytest.raises(ValueError):
        parse_espo_date("17.05.1980")


# --------------------------------------------------------------------------- records


def test_document_record_tolerant() -> None:
    doc = DocumentRecord.model_validate(
        {
            "id": "d1",
            "name": "Klage",
            "fileStatus": "Neu",
            "xaiSyncStatus": "something-new",
            "xaiCollections": None,
            "xaiLastSync": "2026-03-01 10:00:00",
            "md5sum": None,
            "createdAt": "2026-01-01 00:00:00",
            "assignedUserId": "u1",
        }
    )
    assert doc.fileStatus is FileStatus.NEW
    assert doc.xaiSyncStatus is None  # unknown status read as None, not an error
    assert doc.xaiCollections == []
    assert doc.xaiLastSync == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert doc.get("assignedUserId") == "u1"
    assert doc.model_extra == {"createdAt": "2026-01-01 00:00:00", "assignedUserId": "u1"}
    minimal = DocumentRecord.model_validate({"id": "d2"})
    assert minimal.xaiCollections == [] and minimal.fileStatus is None and minimal.current_hash is None


def test_document_record_values_and_dump() -> None:
    doc = DocumentRecord.model_validate(
        {"id": "d1", "fileStatus": "synced", "xaiSyncStatus": "clean", "xaiCollections": ["c1", "c2"], "md5sum": "abc"}
    )
    assert doc.xaiSyncStatus is XAISyncStatus.CLEAN and doc.current_hash == "abc"
    doc.xaiLastSync = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    doc.fileStatus = "changed"  # type: ignore[assignment]  # validated on assignment
    assert doc.fileStatus is FileStatus.CHANGED
    out = doc.to_espo(include=["fileStatus", "xaiSyncStatus", "xaiCollections", "xaiLastSync"])
    assert out == {
        "fileStatus": "changed",
        "xaiSyncStatus": "clean",
        "xaiCollections": ["c1", "c2"],
        "xaiLastSync": "2026-03-01 12:00:00",
    }
    assert DocumentRecord.model_validate({"id": "d", "xaiCollections": '["c9"]'}).xaiCollections == ["c9"]


def test_document_record_rejects_missing_id_and_bad_datetime() -> None:
    with pytest.raises(PydanticValidationError):
        DocumentRecord.model_validate({"name": "no id"})
    with pytest.raises(PydanticValidationError):
        DocumentRecord.model_validate({"id": "d", "xaiLastSync": "gestern"})


def test_entity_record() -> None:
    entity = EntityRecord.model_validate({"id": "a1", "name": "ACME", "xaiCollectionId": None, "status": "Active"})
    assert entity.xaiCollectionId is None and entity.get("status") == "Active"


# --------------------------------------------------------------------------- queue events


def test_sync_event_round_trip() -> None:
    event = SyncEvent(entity_type=EntityType.DOKUMENTE, entity_id="d1", action=EntityAction.UPDATE, changed_fields=["name"])
    data = event.to_queue()
    assert data["entity_type"] == "CDokumente" and data["action"] == "update" and data["source"] == "webhook"
    assert isinstance(data["received_at"], str)
    back = SyncEvent.from_queue(data)
    assert back == event and back.received_at.tzinfo is not None


def test_sync_event_accepts_strings_and_extras() -> None:
    event = SyncEvent.from_queue(
        {
            "entity_type": "Account",
            "entity_id": "a1",
            "action": "link",
            "source": "collection_manager",
            "received_at": "2026-03-01T10:00:00",
            "related_entity_type": "Raeumungsklage",
            "related_entity_id": "r1",
            "trace": "abc",
        }
    )
    assert event.source is SyncSource.COLLECTION_MANAGER
    assert event.received_at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert event.model_extra == {"trace": "abc"}


@pytest.mark.parametrize(
    "bad",
    [
        {"entity_type": "Contact", "entity_id": "a1", "action": "create"},
        {"entity_type": "Account", "entity_id": "a 1", "action": "create"},
        {"entity_type": "Account", "entity_id": "a1", "action": "upsert"},
        {"entity_type": "Account", "entity_id": "a1", "action": "create", "source": "carrier-pigeon"},
        "not a dict",
    ],
)
def test_sync_event_rejects(bad: object) -> None:
    with pytest.raises(ValidationError):
        SyncEvent.from_queue(bad)
