"""POST /p3/run {scope}: a fixed sequence of state calls through ctx.state; answers every result
(an error as {"error": message})."""

from motia import http

config = {"name": "P3 State Ops", "flows": ["conformance"], "triggers": [http("POST", "/p3/run")], "enqueues": []}


async def _try(call):
    try:
        return await call
    except Exception as exc:  # noqa: BLE001 - the engine's error message is the result
        return {"error": str(exc)}


async def handler(request, ctx):
    scope = request.body["scope"]
    s = ctx.state
    out = {}
    out["get_missing"] = await _try(s.get(scope, "k"))
    out["set_first"] = await _try(s.set(scope, "k", {"a": {"b": 1}, "n": 1, "f": 1.5, "tags": []}))
    out["set_again"] = await _try(s.set(scope, "k", {"a": {"b": 1}, "n": 1, "f": 1.5, "tags": []}))
    out["update"] = await _try(s.update(scope, "k", [
        {"type": "set", "path": "a.b", "value": 2},
        {"type": "increment", "path": "n", "by": 2},
        {"type": "increment", "path": "f", "by": 1},
        {"type": "decrement", "path": "missing", "by": 3},
        {"type": "merge", "path": "a", "value": {"ignored": True}},
        {"type": "merge", "path": "", "value": {"merged": "root"}},
        {"type": "merge", "value": {"no_path": 1}},
        {"type": "remove", "path": "gone"},
    ]))
    out["update_float"] = await _try(s.update(scope, "k", [{"type": "increment", "path": "n", "by": 1.5}]))
    out["update_new_key"] = await _try(s.update(scope, "fresh", []))
    out["get"] = await _try(s.get(scope, "k"))
    out["list"] = await _try(s.list(scope))
    out["groups"] = await _try(s.list_groups())
    out["delete"] = await _try(s.delete(scope, "k"))
    out["delete_again"] = await _try(s.delete(scope, "k"))
    out["delete_fresh"] = await _try(s.delete(scope, "fresh"))
    out["groups_after_delete"] = await _try(s.list_groups())
    return {"status": 200, "body": out}
