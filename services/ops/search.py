"""The search box (`GET /ops/search?q=`, `bitbylaw-ops search`): any id or name to the entities
the ops API can show.

One EspoCRM list call per entity type (five), each an `or` of: the id, a name containing the
text, and the ids the sync keeps for that type (documents: `xaiId`, the xAI file; parties and
bank accounts: `advowareId`, when the text is a number; collection owners: `xaiCollectionId`);
plus the employees whose Kürzel is the text (CALENDAR_MAPPING, no call). A type whose list
fails is named in `errors`, the others still answer. At most `limit` hits per type.
"""

from __future__ import annotations

import asyncio
from typing import Any

from services.clients.errors import IntegrationError
from services.ops.entities import ESPOCRM_TYPES, EntityRef, OpsEntityType
from services.ops.systems import Systems
from services.ops.view import describe

MAX_QUERY = 200
DEFAULT_LIMIT = 10
MAX_LIMIT = 50
OWNER_TYPES = frozenset({OpsEntityType.PARTY, OpsEntityType.ACCOUNT, OpsEntityType.EVICTION_CASE})
LINKED_TYPES = frozenset({OpsEntityType.PARTY, OpsEntityType.BANK_ACCOUNT})


def where_for(kind: OpsEntityType, q: str) -> list[dict[str, Any]]:
    """The EspoCRM `where` of one type's search (rules: module docstring)."""
    items: list[dict[str, Any]] = [
        {"type": "equals", "attribute": "id", "value": q},
        {"type": "contains", "attribute": "name", "value": q},
    ]
    if kind is OpsEntityType.DOCUMENT:
        items.append({"type": "equals", "attribute": "xaiId", "value": q})
    if kind in OWNER_TYPES:
        items.append({"type": "equals", "attribute": "xaiCollectionId", "value": q})
    if kind in LINKED_TYPES and q.isdigit():
        items.append({"type": "equals", "attribute": "advowareId", "value": int(q)})
    return [{"type": "or", "value": items}]


def _matched(record: dict[str, Any], q: str) -> str:
    for name in ("id", "xaiId", "xaiCollectionId", "advowareId"):
        if record.get(name) is not None and str(record.get(name)) == q:
            return name
    return "name"


async def search(systems: Systems, q: str, *, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """`{query, results: [{entity, name, matched}], errors: {type: message}}`."""
    results: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    folded = q.casefold()
    for kuerzel in sorted(systems.settings.calendar.mapping):
        if kuerzel.casefold() == folded:
            results.append({"entity": EntityRef(OpsEntityType.EMPLOYEE, kuerzel).as_json(), "name": kuerzel, "matched": "kuerzel"})

    async def one(kind: OpsEntityType) -> list[dict[str, Any]]:
        espo = ESPOCRM_TYPES[kind]
        select = ["id", "name"] + (["xaiId"] if kind is OpsEntityType.DOCUMENT else []) + (
            ["xaiCollectionId"] if kind in OWNER_TYPES else []) + (["advowareId"] if kind in LINKED_TYPES else [])
        try:
            page = await systems.espocrm.list_entities(espo.value, max_size=limit, where=where_for(kind, q), select=",".join(select))
        except IntegrationError as exc:
            errors[kind.value] = describe(exc)
            return []
        return [{"entity": EntityRef(kind, str(r["id"])).as_json(), "name": r.get("name"), "matched": _matched(r, q)}
                for r in page.get("list") or [] if r.get("id")]

    for found in await asyncio.gather(*(one(k) for k in ESPOCRM_TYPES)):
        results += found
    exact = [r for r in results if r["matched"] != "name"]
    return {"query": q, "results": exact + [r for r in results if r["matched"] == "name"], "errors": errors}


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "MAX_QUERY", "search", "where_for"]
