"""EspoCRM simulator: the firm's data model (entity types, enum options, links), errors, ids and timestamps."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from aiohttp import web

API_PREFIX = "/api/v1"


SEED_DIR = Path(__file__).resolve().parent.parent / "seed"


DEMO_SEED_PATH = SEED_DIR / "espocrm_demo.json"


MAX_SIZE_LIMIT = 200


REASON_HEADER = "X-Status-Reason"


ENTITY_NAME_RE = re.compile(r"^[A-Z][A-Za-z0-9_]*$")


DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


READ_ONLY_ATTRIBUTES = ("id", "createdAt", "modifiedAt", "deleted")


RETRY_STATUSES = frozenset({0, 401, 403, 404, 405, 408, 500, 503})


WEBHOOK_SKIP_ATTRIBUTES = frozenset({"isFollowed", "modifiedAt", "modifiedBy", "modifiedById", "modifiedByName"})


class EntityTypeName(str, Enum):
    DOKUMENTE = "CDokumente"
    BETEILIGTE = "CBeteiligte"
    BANKVERBINDUNGEN = "CBankverbindungen"
    RAEUMUNGSKLAGE = "Raeumungsklage"
    ACCOUNT = "Account"
    ATTACHMENT = "Attachment"
    WEBHOOK = "Webhook"


class FileStatus(str, Enum):
    NEW = "new"
    CHANGED = "changed"
    SYNCED = "synced"


class XaiSyncStatus(str, Enum):
    NO_SYNC = "no_sync"
    PENDING_SYNC = "pending_sync"
    CLEAN = "clean"
    UNCLEAN = "unclean"
    FAILED = "failed"


class AdvowareSyncStatus(str, Enum):
    PENDING_SYNC = "pending_sync"
    CLEAN = "clean"
    FAILED = "failed"
    CONFLICT = "conflict"


class AccountStatus(str, Enum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"


class RaeumungsklageStatus(str, Enum):
    OFFEN = "Offen"
    ABGESCHLOSSEN = "Abgeschlossen"


def _options(enum_cls: type[Enum]) -> tuple[str, ...]:
    return tuple(str(m.value) for m in enum_cls)  # type: ignore[attr-defined]


ENUM_OPTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    EntityTypeName.DOKUMENTE.value: {
        "fileStatus": _options(FileStatus),
        "xaiSyncStatus": _options(XaiSyncStatus),
    },
    EntityTypeName.BETEILIGTE.value: {"syncStatus": _options(AdvowareSyncStatus)},
    EntityTypeName.BANKVERBINDUNGEN.value: {"syncStatus": _options(AdvowareSyncStatus)},
    EntityTypeName.ACCOUNT.value: {"status": _options(AccountStatus)},
    EntityTypeName.RAEUMUNGSKLAGE.value: {"status": _options(RaeumungsklageStatus)},
}


DUPLICATE_CHECK_TYPES: frozenset[str] = frozenset({EntityTypeName.BETEILIGTE.value, EntityTypeName.ACCOUNT.value})


class LinkKind(str, Enum):
    MANY_MANY = "manyMany"
    HAS_MANY = "hasMany"  # entity side has many; the foreign side belongsTo via `{foreign_link}Id`


@dataclass(frozen=True)
class LinkDef:
    """A symmetric relationship: `entity_type.link` <-> `foreign_type.foreign_link`."""

    entity_type: str
    link: str
    foreign_type: str
    foreign_link: str
    kind: LinkKind = LinkKind.MANY_MANY
    link_multiple_field: bool = False
    """`entity_type` has a link-multiple field named `link` (EspoCRM's Link Manager option
    `linkMultipleField`): a record read returns `{link}Ids` and `{link}Names`."""
    link_multiple_field_foreign: bool = False
    """The same for `foreign_type.foreign_link` (Link Manager: `linkMultipleFieldForeign`)."""

    @property
    def fk(self) -> str:
        """For HAS_MANY: the child's foreign-key attribute."""
        return f"{self.foreign_link}Id"

    @property
    def fk_name(self) -> str:
        return f"{self.foreign_link}Name"


# The document's three links are link-multiple fields on the CDokumente side ([I]: `{link}Ids`
# on an update of an existing record work only on such fields in EspoCRM,
# FieldProcessing/Relation/LinkMultipleSaver), so reading a document returns its link ids; the
# entities' `dokumente` side has no such field (a party read does not carry its documents).
DEFAULT_LINKS: tuple[LinkDef, ...] = (
    LinkDef("CDokumente", "beteiligte", "CBeteiligte", "dokumente", link_multiple_field=True),
    LinkDef("CDokumente", "raeumungsklagen", "Raeumungsklage", "dokumente", link_multiple_field=True),
    LinkDef("CDokumente", "accounts", "Account", "dokumente", link_multiple_field=True),
    LinkDef("CBeteiligte", "bankverbindungen", "CBankverbindungen", "beteiligte", LinkKind.HAS_MANY),
)


class EspoError(Exception):
    """An error answer: status, `X-Status-Reason`, optional body."""

    def __init__(self, status: int, reason: str, body: Any = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body

    def response(self) -> web.Response:
        safe = self.reason.encode("latin-1", "replace").decode("latin-1").replace("\n", " ")
        headers = {REASON_HEADER: safe}
        if self.body is None:
            return web.Response(status=self.status, headers=headers)
        return web.json_response(self.body, status=self.status, headers=headers)


def now_str() -> str:
    return datetime.now(UTC).strftime(DATETIME_FORMAT)


def generate_id() -> str:
    """17 hex chars like EspoCRM's `uniqid()` (8 + 5 hex) plus 4 random hex."""
    t = time.time()
    return f"{int(t):08x}{int((t % 1) * 1_000_000):05x}{secrets.token_hex(2)}"


def generate_secret() -> str:
    return secrets.token_hex(16)


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass
class Attachment:
    id: str
    name: str
    type: str
    content: bytes
    role: str = "Attachment"
    related_type: str | None = None
    field_name: str | None = None
    parent_type: str | None = None
    parent_id: str | None = None
    created_at: str = field(default_factory=now_str)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "size": len(self.content),
            "role": self.role,
            "relatedType": self.related_type,
            "field": self.field_name,
            "parentType": self.parent_type,
            "parentId": self.parent_id,
            "createdAt": self.created_at,
        }
