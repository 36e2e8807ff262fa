"""The state module: `state::get/set/delete/list/list_groups/update`, scoped key-value pairs.

Answers match the real engine: `set` and `update` return `{old_value, new_value}`,
`delete` the old value, `list` the values of a scope, `list_groups` `{"groups": [...]}`.
`update` applies ops in order: set, merge (shallow, objects), increment, decrement,
remove; `path` addresses a field with dots ("a.b"); an empty path means the whole value.
"""

from __future__ import annotations

import copy
from typing import Any

from iii_local.engine import CallContext, Engine
from iii_local.store import Store


class StateError(ValueError):
    pass


def _split(path: str | None) -> list[str]:
    return [p for p in (path or "").split(".") if p]


def _get_path(value: Any, parts: list[str]) -> Any:
    for p in parts:
        if not isinstance(value, dict):
            return None
        value = value.get(p)
    return value


def _set_path(value: Any, parts: list[str], new: Any) -> Any:
    if not parts:
        return new
    root = value if isinstance(value, dict) else {}
    cur = root
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = new
    return root


def _remove_path(value: Any, parts: list[str]) -> Any:
    if not parts:
        return None
    if not isinstance(value, dict):
        return value
    cur = value
    for p in parts[:-1]:
        cur = cur.get(p)
        if not isinstance(cur, dict):
            return value
    cur.pop(parts[-1], None)
    return value


def apply_ops(value: Any, ops: list[dict[str, Any]]) -> Any:
    """Apply update ops to a copy of `value`."""
    value = copy.deepcopy(value)
    for op in ops:
        if not isinstance(op, dict):
            raise StateError("each op must be an object")
        kind = op.get("type")
        parts = _split(op.get("path"))
        if kind == "set":
            value = _set_path(value, parts, op.get("value"))
        elif kind == "merge":
            current = _get_path(value, parts) if parts else value
            incoming = op.get("value")
            if not isinstance(incoming, dict):
                raise StateError("merge needs an object value")
            merged = {**(current if isinstance(current, dict) else {}), **incoming}
            value = _set_path(value, parts, merged)
        elif kind in ("increment", "decrement"):
            by = op.get("by", op.get("value", 1))
            if not isinstance(by, (int, float)):
                raise StateError(f"{kind} needs a number 'by'")
            current = _get_path(value, parts) if parts else value
            current = current if isinstance(current, (int, float)) else 0
            value = _set_path(value, parts, current + by if kind == "increment" else current - by)
        elif kind == "remove":
            value = _remove_path(value, parts)
        else:
            raise StateError(f"unknown update op {kind!r}")
    return value


class StateModule:
    def __init__(self, engine: Engine, store: Store) -> None:
        self.store = store
        for name, fn in {
            "state::get": self.get,
            "state::set": self.set,
            "state::delete": self.delete,
            "state::list": self.list,
            "state::list_groups": self.list_groups,
            "state::update": self.update,
        }.items():
            engine.register_builtin(name, fn)

    @staticmethod
    def _scope_key(data: Any, need_key: bool = True) -> tuple[str, str]:
        if not isinstance(data, dict):
            raise StateError("expected an object with scope and key")
        scope, key = data.get("scope"), data.get("key")
        if not isinstance(scope, str) or not scope:
            raise StateError("scope must be a non-empty string")
        if need_key and (not isinstance(key, str) or not key):
            raise StateError("key must be a non-empty string")
        return scope, key or ""

    async def get(self, data: Any, ctx: CallContext | None = None) -> Any:
        scope, key = self._scope_key(data)
        return await self.store.kv_get(scope, key)

    async def set(self, data: Any, ctx: CallContext | None = None) -> dict[str, Any]:
        scope, key = self._scope_key(data)
        old = await self.store.kv_get(scope, key)
        new = data.get("value")
        await self.store.kv_set(scope, key, new)
        return {"old_value": old, "new_value": new}

    async def delete(self, data: Any, ctx: CallContext | None = None) -> Any:
        scope, key = self._scope_key(data)
        old = await self.store.kv_get(scope, key)
        await self.store.kv_delete(scope, key)
        return old

    async def list(self, data: Any, ctx: CallContext | None = None) -> list[Any]:
        scope, _ = self._scope_key(data, need_key=False)
        return [v for _, v in await self.store.kv_list(scope)]

    async def list_items(self, scope: str) -> list[tuple[str, Any]]:
        return await self.store.kv_list(scope)

    async def list_groups(self, data: Any = None, ctx: CallContext | None = None) -> dict[str, Any]:
        return {"groups": await self.store.kv_scopes()}

    async def update(self, data: Any, ctx: CallContext | None = None) -> dict[str, Any]:
        scope, key = self._scope_key(data)
        ops = data.get("ops")
        if not isinstance(ops, list):
            raise StateError("ops must be a list")
        old = await self.store.kv_get(scope, key)
        new = apply_ops(old, ops)
        await self.store.kv_set(scope, key, new)
        return {"old_value": old, "new_value": new}
