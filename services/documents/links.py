"""What the document sync knows of a document's links without listing them (pure, no I/O).

Link ids in the read: EspoCRM loads every link-multiple field into a record read as
`{link}Ids` (FieldProcessing/LinkMultiple/Loader). Where the firm's CDokumente has such a
field, the document's read already names its linked entities, so a link with no ids needs no
related list (`link_ids`); without the field (attribute absent) the link is listed as before.

The link memory (Motia state scope LINKS_SCOPE, one entry per document, written only under the
document's lock): the linked entities as the last full read saw them (type, id, whether the
collection rule wants a collection, its collection id) and, per entity, the collection
change token read just before them. A later event may plan with them instead of reading the
entities again (`recall`) only while
1. the document's read names exactly the same linked entities (`{link}Ids` of every link
   present and equal), so a link or unlink always reads the entities again; and
2. every entity's change token is still the remembered one. The collection manager writes a
   new token (CHANGES_SCOPE, key `{type}:{id}`) right after it stored a new, adopted or no
   collection id in EspoCRM; a run that read the entity before that write read the token
   before it too, so its memory never passes this test (a seqlock, no ledger help needed).
A link/unlink event (`LINK_CHANGE`) whose entity the memory has (unlink) or lacks (link)
contradicts it before any read (`contradicts`). Only an UP_TO_DATE plan is taken from
memory (the executor's `precheck`); every other decision is made again from a full read
under the lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.documents.plan import DOCUMENT_LINKS, LinkedEntity
from services.platform.models import DocumentRecord, EntityAction, EntityType, SyncEvent

LINKS_SCOPE = "document_sync.links"
"""Motia state scope: document id → `{"linked": [[type, id, should_have, collection_id, token], ...]}`."""

CHANGES_SCOPE = "document_sync.collection_changes"
"""Motia state scope: `{type}:{id}` of an entity → `{"token": ...}`, renewed by the collection
manager whenever it changed the entity's collection."""

LINK_CHANGE = "link_change"
"""Document event field of a link/unlink webhook: `link` or `unlink` (of `related_entity_*`;
services.documents.events.link_webhook_events sets it under this name)."""


def change_key(entity_type: EntityType | str, entity_id: str) -> str:
    return f"{entity_type}:{entity_id}"


def change_token(entry: Mapping[str, Any] | None) -> str | None:
    token = (entry or {}).get("token")
    return str(token) if token else None


def link_ids(doc: DocumentRecord, link: str) -> list[str] | None:
    """The ids EspoCRM's read gave for `link` (`{link}Ids`), or None when the read has no such
    attribute (the link is no link-multiple field in this CRM)."""
    value = doc.get(f"{link}Ids")
    if not isinstance(value, list):
        return None
    return sorted({str(v) for v in value if v})


def linked_keys(doc: DocumentRecord) -> set[tuple[str, str]] | None:
    """(entity type, id) of every entity the read names on the document's links; None unless
    every link's ids are in the read."""
    keys: set[tuple[str, str]] = set()
    for link, entity_type in DOCUMENT_LINKS:
        ids = link_ids(doc, link)
        if ids is None:
            return None
        keys.update((entity_type.value, i) for i in ids)
    return keys


def contradicts(event: SyncEvent, memory: Mapping[str, Any]) -> bool:
    """The event links an entity the memory lacks, or unlinks one it has: the memory is stale
    whatever the document's read says (no read needed to know the plan must be made anew)."""
    change = (event.model_extra or {}).get(LINK_CHANGE)
    if change not in (EntityAction.LINK.value, EntityAction.UNLINK.value) or not event.related_entity_id:
        return False
    key = [str(event.related_entity_type), str(event.related_entity_id)]
    remembered = any(isinstance(r, list) and [str(x) for x in r[:2]] == key for r in memory.get("linked") or [])
    return bool(remembered != (change == EntityAction.LINK.value))


def remember(linked: Iterable[LinkedEntity], tokens: Mapping[tuple[str, str], str | None]) -> dict[str, Any]:
    """The memory entry for the entities of one full read and the change tokens read before it."""
    rows = sorted(
        (
            [e.entity_type.value, e.entity_id, e.should_have_collection, e.collection_id, tokens.get((e.entity_type.value, e.entity_id))]
            for e in linked
        ),
        key=lambda r: (str(r[0]), str(r[1])),
    )
    return {"linked": rows}


def recall(doc: DocumentRecord, memory: Mapping[str, Any] | None) -> tuple[list[LinkedEntity], dict[tuple[str, str], str | None]] | None:
    """The remembered linked entities and their tokens when the document's read names exactly
    them (rule 1; the caller compares the tokens, rule 2); None when the read has no link ids,
    nothing is remembered or the links differ."""
    keys = linked_keys(doc)
    rows = (memory or {}).get("linked")
    if keys is None or not isinstance(rows, list):
        return None
    linked: list[LinkedEntity] = []
    tokens: dict[tuple[str, str], str | None] = {}
    try:
        for etype, eid, should, cid, token in rows:
            entity = LinkedEntity(EntityType(str(etype)), str(eid), bool(should), str(cid) if cid else None)
            linked.append(entity)
            tokens[(entity.entity_type.value, entity.entity_id)] = str(token) if token else None
    except (TypeError, ValueError):
        return None  # an entry of another shape: read the entities again
    if set(tokens) != keys or len(linked) != len(keys):
        return None
    return linked, tokens
