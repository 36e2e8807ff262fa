"""Enums for every status value, and pydantic models for webhook items, EspoCRM
records and queue events.

Record models use the EspoCRM attribute names (`fileStatus`, `xaiSyncStatus`, ...) as
field names, so one name is used everywhere: in code, in payloads, in EspoCRM. They are
read models of external data, so they tolerate `None`, unknown extra attributes (kept in
`model_extra`) and status values they do not know (read as `None`). Datetimes are
EspoCRM's `YYYY-MM-DD HH:mm:ss` in UTC (see `espo_datetime`/`parse_espo_datetime`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from services.clients.errors import ValidationError

# --------------------------------------------------------------------------- enums


class FileStatus(StrEnum):
    """Valid values for CDokumente.fileStatus."""

    NEW = "new"
    CHANGED = "changed"
    SYNCED = "synced"


class XAISyncStatus(StrEnum):
    """Valid values for CDokumente.xaiSyncStatus."""

    NO_SYNC = "no_sync"  # entity has no xAI collections
    PENDING_SYNC = "pending_sync"  # sync in progress (locked)
    CLEAN = "clean"  # synced successfully
    UNCLEAN = "unclean"  # needs re-sync (file changed)
    FAILED = "failed"  # sync failed (see xaiSyncError)


class EntityAction(StrEnum):
    """Webhook / queue actions."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    LINK = "link"
    UNLINK = "unlink"


class EntityType(StrEnum):
    """Supported EspoCRM entity types."""

    DOKUMENTE = "CDokumente"
    BETEILIGTE = "CBeteiligte"
    RAEUMUNGSKLAGE = "Raeumungsklage"
    ACCOUNT = "Account"
    BANKVERBINDUNGEN = "CBankverbindungen"


LINKABLE_ENTITY_TYPES: frozenset[EntityType] = frozenset(
    {EntityType.RAEUMUNGSKLAGE, EntityType.ACCOUNT, EntityType.BETEILIGTE}
)
"""Entity types a document can be linked to (those that can own an xAI collection)."""


class SyncStatus(StrEnum):
    """Valid values for syncStatus of CBeteiligte / CBankverbindungen (EspoCRM ↔ Advoware)."""

    PENDING_SYNC = "pending_sync"
    CLEAN = "clean"
    FAILED = "failed"
    CONFLICT = "conflict"


class SyncSource(StrEnum):
    """Who put an event on the queue."""

    WEBHOOK = "webhook"  # an EspoCRM webhook
    CRON = "cron"  # a scheduled sweep
    COLLECTION_MANAGER = "collection_manager"  # the collection manager fanning out to documents
    SYNC = "sync"  # a follow-up raised by another sync step
    MANUAL = "manual"  # an operator (API call, script)


E = TypeVar("E", bound=Enum)

# Spellings seen in the firm's EspoCRM (German labels of older layouts) → enum values.
_FILE_STATUS_ALIASES = {
    "neu": FileStatus.NEW,
    "geändert": FileStatus.CHANGED,
    "geaendert": FileStatus.CHANGED,
    "synchronisiert": FileStatus.SYNCED,
}


def coerce_enum(enum: type[E], value: Any, aliases: dict[str, E] | None = None) -> E | None:
    """`value` as a member of `enum` (exact, then case-insensitive, then aliases); None when unknown."""
    if value is None or isinstance(value, enum):
        return value
    if isinstance(value, Enum):
        value = value.value
    if not isinstance(value, str):
        return None
    try:
        return enum(value)
    except ValueError:
        pass
    lowered = value.strip().lower()
    for member in enum:
        if str(member.value).lower() == lowered:
            return member
    if aliases and lowered in aliases:
        return aliases[lowered]
    return None


# --------------------------------------------------------------------------- datetimes


def espo_datetime(dt: datetime) -> str:
    """EspoCRM datetime text `YYYY-MM-DD HH:mm:ss` in UTC (naive datetimes are taken as UTC)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def espo_date(d: date) -> str:
    """EspoCRM date text `YYYY-MM-DD`."""
    return d.strftime("%Y-%m-%d")


def utc_now() -> datetime:
    """Now, timezone-aware UTC, without microseconds (EspoCRM stores seconds)."""
    return datetime.now(UTC).replace(microsecond=0)


_ESPO_DT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?$")


def parse_espo_datetime(value: str | datetime) -> datetime:
    """Parse EspoCRM's `YYYY-MM-DD HH:mm[:ss]` (UTC) or ISO 8601; returns an aware UTC datetime.

    Raises ValueError on anything else.
    """
    if isinstance(value, datetime):
        dt = value
    else:
        if not isinstance(value, str):
            raise ValueError(f"not a datetime: {value!r}")
        text = value.strip()
        if _ESPO_DT.match(text):
            dt = datetime.fromisoformat(text.replace(" ", "T"))
        else:
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"not an EspoCRM datetime: {value!r}") from None
            if len(text) <= 10:  # a bare date is not a datetime
                raise ValueError(f"not an EspoCRM datetime: {value!r}")
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_espo_date(value: str | date) -> date:
    """Parse `YYYY-MM-DD` (a datetime's date part is accepted too)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        return date.fromisoformat(text[:10]) if len(text) >= 10 else date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an EspoCRM date: {value!r}") from None


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _to_datetime(value: Any) -> datetime | None:
    value = _blank_to_none(value)
    return None if value is None else parse_espo_datetime(value)


def _to_str_list(value: Any) -> list[str]:
    """EspoCRM array fields: a list, None, or (older layouts) JSON text."""
    value = _blank_to_none(value)
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [part.strip() for part in value.split(",") if part.strip()]
        if value is None:
            return []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return [str(v) for v in value if v is not None and str(v) != ""]


def _enum_field(enum: type[E], aliases: dict[str, E] | None = None) -> Any:
    return BeforeValidator(lambda v: coerce_enum(enum, _blank_to_none(v), aliases))


EspoDateTime = Annotated[
    datetime | None,
    BeforeValidator(_to_datetime),
    PlainSerializer(lambda v: espo_datetime(v) if v is not None else None, return_type=str | None),
]
"""A datetime read from / written as EspoCRM text (UTC)."""

StrList = Annotated[list[str], BeforeValidator(_to_str_list)]

# --------------------------------------------------------------------------- webhook input

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

EntityId = Annotated[str, Field(pattern=ID_PATTERN, min_length=1, max_length=64)]
"""An EspoCRM record id: 1-64 characters of [A-Za-z0-9_-]."""


class WebhookItem(BaseModel):
    """One item of an EspoCRM webhook body (create: all attributes; update: changed ones + id;
    delete: only id). Other attributes are kept in `model_extra`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: EntityId

    @property
    def attributes(self) -> dict[str, Any]:
        """The attributes besides `id` that the webhook carried."""
        return dict(self.model_extra or {})


ENVELOPE_TYPE_KEYS = ("entity_type", "entityType")
ENVELOPE_ID_KEYS = ("entity_id", "entityId")
ENVELOPE_ACTION_KEY = "action"


class EndpointWebhookItem(WebhookItem):
    """An item at a webhook endpoint bound to one entity type and action (subclasses made by
    `endpoint_webhook_item`). Besides EspoCRM's `{id, <attributes>}` it takes the manual-test
    shape of the firm's guide, `{"entity_type": "CBeteiligte", "entity_id": "abc123",
    "action": "create"}`, and the guide's `{"id": "test123", "entityType": "CDokumente"}`.

    Rules: without `id`, `entity_id` (or `entityId`) is the id. `entity_type`/`entityType`,
    when given, must name the endpoint's entity type; in such an envelope (a type given, or the
    id given as `entity_id`) `action`, when given, must be the endpoint's action; otherwise the
    item is rejected with the reason (a 400 when no item is left). The envelope keys are not
    record attributes: they never reach `attributes` (nor an update's `changed_fields`)."""

    endpoint_entity: ClassVar[EntityType | None] = None
    endpoint_action: ClassVar[EntityAction | None] = None

    @model_validator(mode="before")
    @classmethod
    def _envelope(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        types = [data.pop(k) for k in ENVELOPE_TYPE_KEYS if k in data]
        ids = [data.pop(k) for k in ENVELOPE_ID_KEYS if k in data] if "id" not in data else []
        for given in types:
            if cls.endpoint_entity is not None and coerce_enum(EntityType, given) is not cls.endpoint_entity:
                raise ValueError(f"entity_type {given!r} does not match this endpoint ({cls.endpoint_entity.value})")
        if ids:
            if len(set(map(str, ids))) > 1:
                raise ValueError("entity_id and entityId differ")
            data["id"] = ids[0]
        if (types or ids) and ENVELOPE_ACTION_KEY in data:
            action = data.pop(ENVELOPE_ACTION_KEY)
            if cls.endpoint_action is not None and coerce_enum(EntityAction, action) is not cls.endpoint_action:
                raise ValueError(f"action {action!r} does not match this endpoint ({cls.endpoint_action.value})")
        return data


@functools.cache
def endpoint_webhook_item(entity_type: EntityType, action: EntityAction) -> type[EndpointWebhookItem]:
    """The item model of the `action` webhook endpoint of `entity_type` (see EndpointWebhookItem)."""
    name = f"{entity_type.value}{action.value.title()}WebhookItem"
    attrs = {"endpoint_entity": entity_type, "endpoint_action": action, "__module__": __name__}
    return type(name, (EndpointWebhookItem,), attrs)


class LinkWebhookItem(BaseModel):
    """A document linked to / unlinked from an entity (camelCase or snake_case keys)."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    entityType: EntityType = Field(validation_alias=AliasChoices("entityType", "entity_type"))
    entityId: EntityId = Field(validation_alias=AliasChoices("entityId", "entity_id"))
    documentId: EntityId = Field(validation_alias=AliasChoices("documentId", "document_id"))

    @field_validator("entityType")
    @classmethod
    def _linkable(cls, value: EntityType) -> EntityType:
        if value not in LINKABLE_ENTITY_TYPES:
            allowed = ", ".join(sorted(t.value for t in LINKABLE_ENTITY_TYPES))
            raise ValueError(f"documents cannot be linked to {value.value} (allowed: {allowed})")
        return value


def _describe(error: PydanticValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item.get("loc", ())) or "item"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def validate_model(model: type[BaseModel], data: Any, *, what: str | None = None) -> Any:
    """`model.model_validate(data)`, raising services.clients.errors.ValidationError on bad input."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationError(f"Invalid {what or model.__name__}: {_describe(exc)}") from None


# --------------------------------------------------------------------------- EspoCRM records


class EspoRecord(BaseModel):
    """Base of EspoCRM read models: extra attributes kept, assignment validated."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_assignment=True)

    id: str
    name: str | None = None

    def get(self, field: str, default: Any = None) -> Any:
        """A declared field or an extra attribute, by EspoCRM name."""
        if field in type(self).model_fields:
            value = getattr(self, field)
            return default if value is None else value
        return (self.model_extra or {}).get(field, default)

    def to_espo(self, *, include: Iterable[str] | None = None, exclude_none: bool = False) -> dict[str, Any]:
        """JSON-ready dict in EspoCRM's shapes (datetimes as `YYYY-MM-DD HH:mm:ss`)."""
        data = self.model_dump(mode="json", exclude_none=exclude_none)
        if include is not None:
            wanted = set(include)
            data = {k: v for k, v in data.items() if k in wanted}
        return data


class DocumentRecord(EspoRecord):
    """CDokumente."""

    fileId: str | None = None
    fileName: str | None = None
    md5sum: str | None = None
    """EspoCRM's MD5 of the current file (hex)."""
    sha256: str | None = None
    """SHA-256 of the file as the sync last read it (the guide: optional)."""
    fileStatus: Annotated[FileStatus | None, _enum_field(FileStatus, _FILE_STATUS_ALIASES)] = None
    xaiSyncStatus: Annotated[XAISyncStatus | None, _enum_field(XAISyncStatus)] = None
    xaiId: str | None = None
    xaiCollections: StrList = Field(default_factory=list)
    xaiSyncedHash: str | None = None
    """MD5 of the bytes in `xaiId` at the last sync (a 64-digit SHA-256 before the MD5 rule)."""
    xaiSyncError: str | None = None
    xaiLastSync: EspoDateTime = None

    @property
    def current_hash(self) -> str | None:
        """The hash the sync compares with `xaiSyncedHash` (the MD5 at last sync): `md5sum`,
        EspoCRM's MD5 of the current file (services.documents.plan)."""
        return self.md5sum


class EntityRecord(EspoRecord):
    """An entity that may own an xAI collection (Account, Raeumungsklage, CBeteiligte...)."""

    xaiCollectionId: str | None = None


# --------------------------------------------------------------------------- queue payload


class SyncEvent(BaseModel):
    """The payload sync steps put on / take from the queue.

    `to_queue()` gives plain JSON; `SyncEvent.from_queue(data)` validates it back
    (raising services.clients.errors.ValidationError). Unknown keys are kept.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    entity_type: EntityType
    entity_id: EntityId
    action: EntityAction
    source: SyncSource = SyncSource.WEBHOOK
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    related_entity_type: EntityType | None = None
    """link/unlink: the entity the document was linked to / unlinked from."""
    related_entity_id: EntityId | None = None
    changed_fields: list[str] = Field(default_factory=list)
    """update webhooks: the attributes EspoCRM reported as changed."""
    webhook_id: str | None = None
    reason: str | None = None
    """Free text for logs, e.g. why a cron sweep picked the entity."""

    @field_validator("received_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def to_queue(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_queue(cls, data: Any) -> SyncEvent:
        return validate_model(cls, data, what="sync event")  # type: ignore[no-any-return]
