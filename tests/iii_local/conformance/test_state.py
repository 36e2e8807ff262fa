"""Row P3: the state functions of engine 0.8.3, through the real motia worker's `ctx.state`.

Paths are under `engine/src/` of iii-hq/iii at tag iii/v0.8.3; `UpdateOp` is iii-sdk's
(`sdk/packages/rust/iii/src/types.rs` 48-71). The step is `state_steps/state_ops_step.py`.
"""

from __future__ import annotations

from pathlib import Path

from iii_local.testing import MotiaTester

STEPS = Path(__file__).parent / "state_steps"
FLOAT_BY = "Failed to deserialize input for state::update: invalid type: floating point `1.5`, expected i64"


async def _run(t: MotiaTester, scope: str) -> dict:
    r = await t.post("/p3/run", {"scope": scope})
    assert r.status == 200, r.text
    return r.json()


async def test_p3_state_functions_and_update_shapes_kv_store() -> None:
    """P3 — modules/state/state.rs 236-414 (`state::set/get/delete/update/list/list_groups` and
    their answers), builtins/kv.rs 451-558 (`update`: a missing key starts as `{}`; `set` with
    `path` as one literal top-level key; `increment` of a non-integer field gives `by`;
    `decrement` of a missing field gives `-by`; `merge` only at the root, a path ignored) and
    570-580 (`list_groups` keeps a scope whose last key was deleted), function-macros lib.rs
    210-223 (`deserialization_error` for an `increment` by 1.5: `by` is an i64)."""
    t = MotiaTester(STEPS)
    await t.start()
    try:
        out = await _run(t, "p3.kv")
    finally:
        await t.stop()
    start = {"a": {"b": 1}, "n": 1, "f": 1.5, "tags": []}
    assert out["get_missing"] is None
    assert out["set_first"] == {"old_value": None, "new_value": start}
    assert out["set_again"] == {"old_value": start, "new_value": start}
    after = {"a": {"b": 1}, "n": 3, "f": 1, "tags": [], "a.b": 2, "missing": -3, "merged": "root", "no_path": 1}
    assert out["update"] == {"old_value": start, "new_value": after}
    assert FLOAT_BY in out["update_float"]["error"]
    assert out["update_new_key"] == {"old_value": None, "new_value": {}}
    assert out["get"] == after
    assert sorted(out["list"], key=len) == sorted([after, {}], key=len)
    assert out["groups"] == {"groups": ["p3.kv"]}
    assert out["delete"] == after and out["delete_again"] is None and out["delete_fresh"] == {}
    assert out["groups_after_delete"] == {"groups": ["p3.kv"]}, "KvStore forgets an emptied scope only at restart"


async def test_p3_update_on_the_redis_adapter_runs_the_engines_lua(redis_url: str) -> None:
    """P3 — modules/state/adapters/redis_adapter.rs (`update`: the ops serialized by serde and
    applied by a Lua script with cjson: a merge whose `path` is absent comes through as
    cjson.null and is skipped, an empty list comes back as `{}`, `increment` adds to any
    number). The Redis adapter lists only scopes that still have keys."""
    adapter = {"class": "modules::state::adapters::RedisAdapter", "config": {"redis_url": redis_url}}
    t = MotiaTester(STEPS, state_adapter=adapter)
    await t.start()
    try:
        scope = f"p3.redis.{t.worker_port}"
        out = await _run(t, scope)
    finally:
        await t.stop()
    start = {"a": {"b": 1}, "n": 1, "f": 1.5, "tags": []}
    assert out["set_first"] == {"old_value": None, "new_value": start}
    new = out["update"]["new_value"]
    assert new["a.b"] == 2 and new["n"] == 3 and new["f"] == 2.5 and new["missing"] == -3
    assert new["merged"] == "root" and "ignored" not in new and new["a"] == {"b": 1}
    assert "no_path" not in new, "a merge without path is skipped by the Lua script"
    assert new["tags"] == {}, "cjson turns an empty list into an object"
    assert FLOAT_BY in out["update_float"]["error"]
    assert scope in out["groups"]["groups"]
    assert scope not in out["groups_after_delete"]["groups"]
