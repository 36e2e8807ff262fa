"""The state module: `state::get/set/delete/list/list_groups/update`, as the real engine 0.8.3.

Functions and answers (engine/src/modules/state/state.rs 236-414, structs.rs):
- `state::set {scope, key, value}` (alias `data`) → `{old_value, new_value}`;
  `state::get {scope, key}` → the value or null; `state::delete {scope, key}` → the old value;
  `state::list {scope}` → the values; `state::list_groups {}` → `{"groups": [sorted, unique]}`;
  `state::update {scope, key, ops}` → `{old_value, new_value}`.
- Inputs are read like serde: `scope`/`key` must be strings (empty ones are fine), unknown
  fields are ignored, a bad input answers `deserialization_error` "Failed to deserialize input
  for state::X: …" (function-macros/src/lib.rs 210-223).
- `update` ops (iii-sdk types.rs `UpdateOp`, builtins/kv.rs 451-558): `path` is one literal
  top-level key ("a.b" is a key with a dot, not a nested path); an empty path with a value
  replaces the whole value; `merge` works at the root only (a non-empty path is ignored);
  `increment`/`decrement` take an integer `by` (a float is a deserialization error) and treat
  a non-integer field as missing (increment → `by`; decrement → 0); ops on a non-object
  value are ignored. A missing key starts as `{}` and is stored even if no op applies.
- With `modules::state::adapters::RedisAdapter` the ops run as the engine's own Lua script
  on the Redis server (state/adapters/redis_adapter.rs), with cjson's quirks (an empty list
  comes back as `{}`, numbers keep 14 significant digits, a root merge without `path` does
  nothing).
- KvStore: a scope stays listed by `list_groups` after its last key is deleted, until restart.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from iii_local.engine import CallContext, Engine, InvocationError
from iii_local.store import Store

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
OP_TYPES = ("set", "merge", "increment", "decrement", "remove")


class StateError(InvocationError):
    """An input the engine's serde would refuse: code `deserialization_error`."""

    def __init__(self, function_id: str, detail: str) -> None:
        super().__init__("deserialization_error", f"Failed to deserialize input for {function_id}: {detail}")


def _unexpected(v: Any) -> str:
    """serde's name for an unexpected JSON value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean `{str(v).lower()}`"
    if isinstance(v, int):
        return f"integer `{v}`"
    if isinstance(v, float):
        return f"floating point `{v}`"
    if isinstance(v, str):
        return f"string {json.dumps(v)}"
    if isinstance(v, list):
        return "sequence"
    return "map"


def _object(data: Any, fid: str, struct: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise StateError(fid, f"invalid type: {_unexpected(data)}, expected struct {struct}")
    return data


def _string(data: dict[str, Any], name: str, fid: str) -> str:
    if name not in data:
        raise StateError(fid, f"missing field `{name}`")
    v = data[name]
    if not isinstance(v, str):
        raise StateError(fid, f"invalid type: {_unexpected(v)}, expected a string")
    return v


def _i64(v: Any, fid: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise StateError(fid, f"invalid type: {_unexpected(v)}, expected i64")
    if not I64_MIN <= v <= I64_MAX:
        raise StateError(fid, f"invalid value: integer `{v}`, expected i64")
    return v


def _wrap(n: int) -> int:
    """i64 arithmetic of a release build (wrapping)."""
    return (n - I64_MIN) % 2**64 + I64_MIN


def parse_ops(ops: Any, fid: str = "state::update") -> list[dict[str, Any]]:
    """`Vec<UpdateOp>` as serde reads it, re-serialized the way the engine hands it to Redis."""
    if not isinstance(ops, list):
        raise StateError(fid, f"invalid type: {_unexpected(ops)}, expected a sequence")
    out: list[dict[str, Any]] = []
    for op in ops:
        if not isinstance(op, dict):
            raise StateError(fid, f"invalid type: {_unexpected(op)}, expected internally tagged enum UpdateOp")
        kind = op.get("type")
        if "type" not in op:
            raise StateError(fid, "missing field `type`")
        if kind not in OP_TYPES:
            raise StateError(fid, f"unknown variant `{kind}`, expected one of {', '.join(f'`{t}`' for t in OP_TYPES)}")
        if kind == "merge":
            path = op.get("path")
            if path is not None and not isinstance(path, str):
                raise StateError(fid, f"invalid type: {_unexpected(path)}, expected a string")
            if "value" not in op:
                raise StateError(fid, "missing field `value`")
            out.append({"type": "merge", "path": path, "value": op["value"]})
            continue
        path = _string(op, "path", fid)
        if kind == "set":
            out.append({"type": "set", "path": path, "value": op.get("value")})
        elif kind == "remove":
            out.append({"type": "remove", "path": path})
        else:
            if "by" not in op:
                raise StateError(fid, "missing field `by`")
            out.append({"type": kind, "path": path, "by": _i64(op["by"], fid)})
    return out


def _as_i64(v: Any) -> int | None:
    """serde_json `Value::as_i64`: integers in range only (3.0 is a float)."""
    if isinstance(v, bool) or not isinstance(v, int) or not I64_MIN <= v <= I64_MAX:
        return None
    return v


def apply_ops(value: Any, ops: Any) -> Any:
    """The KvStore's `update` (builtins/kv.rs 451-545) on a copy of `value` (None = absent → {})."""
    parsed = parse_ops(ops)
    current: Any = {} if value is None else copy.deepcopy(value)
    for op in parsed:
        kind, path = op["type"], op["path"]
        if kind == "set":
            if path == "" and op["value"] is not None:
                current = copy.deepcopy(op["value"])
            elif isinstance(current, dict):
                current[path] = copy.deepcopy(op["value"])
        elif kind == "merge":
            if (path is None or path == "") and isinstance(current, dict) and isinstance(op["value"], dict):
                current.update(copy.deepcopy(op["value"]))
        elif kind in ("increment", "decrement") and isinstance(current, dict):
            by = op["by"]
            if path in current:
                n = _as_i64(current[path])
                if kind == "increment":
                    current[path] = by if n is None else _wrap(n + by)
                else:
                    current[path] = 0 if n is None else _wrap(n - by)
            else:
                current[path] = by if kind == "increment" else _wrap(-by)
        elif kind == "remove" and isinstance(current, dict):
            current.pop(path, None)
    return current


# state/adapters/redis_adapter.rs `update`: the engine's Lua script, verbatim in behaviour.
REDIS_UPDATE_LUA = r"""
local json_decode, json_encode = cjson.decode, cjson.encode
local key, field, ops_json = KEYS[1], ARGV[1], ARGV[2]
local old_value_str = redis.call('HGET', key, field)
local old_value = {}
if old_value_str then
    local ok, decoded = pcall(json_decode, old_value_str)
    if ok then old_value = decoded end
end
local ops = json_decode(ops_json)
local current = json_decode(json_encode(old_value))
local function get_path(path)
    if path == nil then return nil end
    if type(path) == 'string' then return path end
    if type(path) == 'table' then
        if path[1] then return path[1] end
        if path['0'] then return path['0'] end
    end
    return path
end
for i, op in ipairs(ops) do
    if op.type == 'set' then
        local path = get_path(op.path)
        if (path == '' or path == nil) and op.value ~= nil then
            current = op.value
        else
            if type(current) ~= 'table' or current == nil then current = {} end
            current[path] = op.value or cjson.null
        end
    elseif op.type == 'merge' then
        local path = get_path(op.path)
        if (path == nil or path == '') and type(current) == 'table' and type(op.value) == 'table' then
            for k, v in pairs(op.value) do current[k] = v end
        end
    elseif op.type == 'increment' then
        local path = get_path(op.path)
        if type(current) ~= 'table' or current == nil then current = {} end
        local val = current[path]
        if type(val) == 'number' then current[path] = val + op.by else current[path] = op.by end
    elseif op.type == 'decrement' then
        local path = get_path(op.path)
        if type(current) ~= 'table' or current == nil then current = {} end
        local val = current[path]
        if type(val) == 'number' then current[path] = val - op.by else current[path] = -op.by end
    elseif op.type == 'remove' then
        local path = get_path(op.path)
        if type(current) == 'table' and current ~= nil then current[path] = nil end
    end
end
local new_value_str = json_encode(current)
redis.call('HSET', key, field, new_value_str)
return {old_value_str or '', new_value_str}
"""


class StateModule:
    def __init__(self, engine: Engine, store: Store, *, redis_adapter: bool = False) -> None:
        self.store = store
        self.redis_adapter = redis_adapter
        self._kv_scopes: set[str] = set()  # KvStore: index maps live until restart, even empty
        for name, fn in {
            "state::get": self.get,
            "state::set": self.set,
            "state::delete": self.delete,
            "state::list": self.list,
            "state::list_groups": self.list_groups,
            "state::update": self.update,
        }.items():
            engine.register_builtin(name, fn)

    async def get(self, data: Any, ctx: CallContext | None = None) -> Any:
        d = _object(data, "state::get", "StateGetInput")
        scope, key = _string(d, "scope", "state::get"), _string(d, "key", "state::get")
        return await self.store.kv_get(scope, key)

    async def set(self, data: Any, ctx: CallContext | None = None) -> dict[str, Any]:
        d = _object(data, "state::set", "StateSetInput")
        scope, key = _string(d, "scope", "state::set"), _string(d, "key", "state::set")
        if "value" in d and "data" in d:
            raise StateError("state::set", "duplicate field `value`")
        if "value" not in d and "data" not in d:
            raise StateError("state::set", "missing field `value`")
        new = d["value"] if "value" in d else d["data"]
        old = await self.store.kv_get(scope, key)
        await self.store.kv_set(scope, key, new)
        self._kv_scopes.add(scope)
        return {"old_value": old, "new_value": new}

    async def delete(self, data: Any, ctx: CallContext | None = None) -> Any:
        d = _object(data, "state::delete", "StateDeleteInput")
        scope, key = _string(d, "scope", "state::delete"), _string(d, "key", "state::delete")
        old = await self.store.kv_get(scope, key)
        await self.store.kv_delete(scope, key)
        return old

    async def list(self, data: Any, ctx: CallContext | None = None) -> list[Any]:
        d = _object(data, "state::list", "StateGetGroupInput")
        return [v for _, v in await self.store.kv_list(_string(d, "scope", "state::list"))]

    async def list_items(self, scope: str) -> list[tuple[str, Any]]:
        return await self.store.kv_list(scope)

    async def list_groups(self, data: Any = None, ctx: CallContext | None = None) -> dict[str, Any]:
        if data is not None:
            _object(data, "state::list_groups", "StateListGroupsInput")
        groups = set(await self.store.kv_scopes())
        if not self.redis_adapter:
            groups |= self._kv_scopes
        return {"groups": sorted(groups)}

    async def update(self, data: Any, ctx: CallContext | None = None) -> dict[str, Any]:
        d = _object(data, "state::update", "StateUpdateInput")
        scope, key = _string(d, "scope", "state::update"), _string(d, "key", "state::update")
        if "ops" not in d:
            raise StateError("state::update", "missing field `ops`")
        ops = parse_ops(d["ops"])
        redis = getattr(self.store, "redis", None) if self.redis_adapter else None
        if redis is not None:
            return await self._redis_update(redis, scope, key, ops)
        old = await self.store.kv_get(scope, key)
        new = apply_ops(old, ops)
        await self.store.kv_set(scope, key, new)
        self._kv_scopes.add(scope)
        return {"old_value": old, "new_value": new}

    async def _redis_update(self, redis: Any, scope: str, key: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """Run the engine's Lua update on the stand-in's hash for the scope (RedisStore layout)."""
        hash_key = self.store._scope(scope)  # type: ignore[attr-defined]
        old_s, new_s = await redis.eval(REDIS_UPDATE_LUA, 1, hash_key, key, json.dumps(ops, separators=(",", ":")))
        if hasattr(self.store, "prefix"):
            await redis.sadd(self.store.prefix + "scopes", scope)  # type: ignore[attr-defined]
        return {"old_value": json.loads(old_s) if old_s else None, "new_value": json.loads(new_s)}
