"""The operator API under `/_console/` on the REST port (what `iii-cli` and the console use).

JSON endpoints: functions/triggers/workers, cron list and manual trigger, state browse and
edit, logs (by trace, level, step, source; `after` for follow-mode polling), traces, queue stats,
the dead letters the builtin queue keeps under `queue:{topic}:dlq` (a listing: the real
engine redrives nothing, so neither does this API), enqueue, and an idle check for tests.

Access (`console_guard`): without `local_engine.console_token` only direct loopback clients
naming a loopback Host; with it, `Authorization: Bearer <token>` on every call (failed
attempts throttled per address). Same-origin only, no CORS preflight, and every write needs
`Content-Type: application/json` plus `X-Console-Request: 1`. Answers have secrets masked
unless the caller sends `X-Console-Reveal: 1` (the test harness does; a browser page cannot
without a preflight, which is refused). A body that is not a JSON object (bad, nested past
127 levels, over 1 MiB) is a 400/413, never a 500.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from iii_local.console_guard import REVEAL_HEADER, Throttle, bearer, mask_response, read_json_object, refusal

if TYPE_CHECKING:
    from iii_local.server import LocalEngine

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DataHandler = Callable[[web.Request], Awaitable[Any]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, default=str))


def _bad(message: str, status: int = 400) -> web.Response:
    return _json({"error": message}, status)



def console_routes(le: LocalEngine) -> list[web.RouteDef]:
    engine = le.engine

    throttle = Throttle()

    def guarded(fn: DataHandler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            token = le.config.local.console_token
            refused = refusal(request, token_set=bool(token))
            if refused is not None:
                return refused
            if token:
                client = request.remote or ""
                throttled = throttle.refusal(client)
                if throttled is not None:
                    return throttled
                given = bearer(request)
                if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                    if given is not None:
                        throttle.failed(client)
                    return _bad("console token required", 401)
            result = await fn(request)
            if isinstance(result, web.StreamResponse):
                return result
            if request.headers.get(REVEAL_HEADER) != "1":
                result = mask_response(request.path, result)
            return _json(result)

        return wrapper

    async def preflight(request: web.Request) -> web.Response:
        return _bad("no cross-origin access to the console API", 403)  # refusal() answers first

    async def functions(request: web.Request) -> Any:
        return {
            "functions": [
                {"function_id": f.id, "description": f.description, "metadata": f.metadata, "worker_id": f.worker.id}
                for f in sorted(engine.functions.values(), key=lambda f: f.id)
            ],
            "triggers": [t.public() for t in sorted(engine.triggers.values(), key=lambda t: (t.trigger_type, t.function_id))],
            "workers": [w.public() for w in engine.workers.values() if not w.telemetry_only],
        }

    async def cron_list(request: web.Request) -> Any:
        return {"jobs": [j.public() for j in le.cron.jobs.values()]} if le.cron else {"jobs": []}

    async def cron_trigger(request: web.Request) -> Any:
        data = await read_json_object(request)
        fid = data.get("function_id")
        if not isinstance(fid, str) or not fid:
            return _bad("function_id is required")
        if le.cron is None:
            return _bad("no cron module configured", 404)
        job = le.cron.job_for_function(fid)  # also the guide's "...::trigger::0" style (by step name)
        if job is None:
            return _bad(f"no cron trigger for function {fid!r}", 404)
        result = await le.cron.fire(job, manual=True)
        return result

    async def state_groups(request: web.Request) -> Any:
        return await le.state.list_groups()

    async def state_scope(request: web.Request) -> Any:
        items = await le.state.list_items(request.match_info["scope"])
        return {"scope": request.match_info["scope"], "items": [{"key": k, "value": v} for k, v in items]}

    async def state_get(request: web.Request) -> Any:
        value = await le.state.get({"scope": request.match_info["scope"], "key": request.match_info["key"]})
        return {"value": value}

    async def state_set(request: web.Request) -> Any:
        data = await read_json_object(request)
        if "value" not in data:
            return _bad("body needs 'value'")
        return await le.state.set({"scope": request.match_info["scope"], "key": request.match_info["key"], "value": data["value"]})

    async def state_delete(request: web.Request) -> Any:
        old = await le.state.delete({"scope": request.match_info["scope"], "key": request.match_info["key"]})
        return {"old_value": old}

    async def logs(request: web.Request) -> Any:
        q = request.query
        try:
            after = int(q.get("after", "0"))
            limit = min(int(q.get("limit", "500")), 10_000)
        except ValueError:
            return _bad("after and limit must be integers")
        recs = engine.telemetry.query_logs(trace_id=q.get("trace") or None, level=q.get("level"), after_seq=after, limit=limit, step=q.get("step") or None,
                                              source=q.get("source") or None)
        return {"logs": [r.to_dict() for r in recs], "last_seq": recs[-1].seq if recs else after}

    async def traces(request: web.Request) -> Any:
        q = request.query
        try:
            limit = min(int(q.get("limit", "100")), 1000)
            since = float(q["since"]) if "since" in q else None
        except ValueError:
            return _bad("limit and since must be numbers")
        return {"traces": engine.telemetry.list_traces(limit=limit, step=q.get("step") or None, outcome=q.get("outcome") or None, since=since)}

    async def trace(request: web.Request) -> Any:
        tr = engine.telemetry.get_trace(request.match_info["trace_id"])
        if tr is None:
            return _bad("trace not found", 404)
        return tr

    async def queues(request: web.Request) -> Any:
        if le.queue is None:
            return {"queues": [], "delivered": 0, "store": None}
        return {"queues": le.queue.stats(), "delivered": le.queue.delivered, "store": le.queue.store_info()}

    async def dlq(request: web.Request) -> Any:
        entries = le.queue.dead_letters(request.query.get("topic") or None) if le.queue else []
        return {"dead_letters": entries}

    async def messages(request: web.Request) -> Any:
        try:
            after = int(request.query.get("after", "0"))
            limit = max(0, min(int(request.query.get("limit", "1000")), 10_000))
        except ValueError:
            return _bad("after and limit must be integers")
        msgs = le.queue.messages(request.query.get("topic") or None, after, limit, trace_id=request.query.get("trace") or None) if le.queue else []
        return {"messages": msgs, "last_seq": le.queue.last_message_seq if le.queue else 0}

    async def enqueue(request: web.Request) -> Any:
        data = await read_json_object(request)
        topic = data.get("topic")
        if not isinstance(topic, str) or not topic or le.queue is None:
            return _bad("topic is required")
        ids = await le.queue.enqueue(topic, data.get("data"))
        return {"job_ids": ids}

    async def status(request: web.Request) -> Any:
        queue_idle = le.queue.idle() if le.queue else True
        in_flight_http = le.rest.in_flight if le.rest else 0
        return {
            "idle": queue_idle and in_flight_http == 0,
            "queue_idle": queue_idle,
            "http_in_flight": in_flight_http,
            "workers": len([w for w in engine.workers.values() if not w.telemetry_only]),
            "functions": len(engine.functions),
            "uptime_s": round(time.time() - engine.started_at, 3),
            "worker_restarts": sum(s.restarts for s in le.supervisors),
        }

    async def restart_worker(request: web.Request) -> Any:
        for s in le.supervisors:
            s.restart()
        return {"restarting": len(le.supervisors)}

    routes = [
        web.get("/_console/functions", functions),
        web.get("/_console/cron", cron_list),
        web.post("/_console/cron/trigger", cron_trigger),
        web.get("/_console/state", state_groups),
        web.get("/_console/state/{scope}", state_scope),
        web.get("/_console/state/{scope}/{key}", state_get),
        web.put("/_console/state/{scope}/{key}", state_set),
        web.delete("/_console/state/{scope}/{key}", state_delete),
        web.get("/_console/logs", logs),
        web.get("/_console/traces", traces),
        web.get("/_console/traces/{trace_id}", trace),
        web.get("/_console/queues", queues),
        web.get("/_console/dlq", dlq),
        web.post("/_console/enqueue", enqueue),
        web.get("/_console/messages", messages),
        web.get("/_console/status", status),
        web.post("/_console/worker/restart", restart_worker),
        web.route("OPTIONS", "/_console/{tail:.*}", preflight),
    ]
    return [web.route(r.method, r.path, guarded(r.handler)) for r in routes]  # type: ignore[attr-defined]
