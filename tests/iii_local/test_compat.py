"""The stand-in engine against the real worker: motia 1.0.2rc1 + iii-sdk 0.8.3, unmodified."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from iii_local.testing import MotiaTester

STEPS = Path(__file__).parent / "steps"
COMPAT_FUNCTIONS = 12  # 7 http + 2 fanout + flaky + slow + cron


@pytest.fixture(scope="module")
async def tester():
    t = MotiaTester(STEPS, rest_timeout_ms=3000, queue_defaults={"backoff_ms": 100})
    await t.start(wait_functions=COMPAT_FUNCTIONS)
    yield t
    await t.stop()


async def test_http_status_headers_json_body_params(tester: MotiaTester) -> None:
    r = await tester.post("/compat/echo/abc?x=1&y=two", json_body={"hello": "wörld", "n": [1, 2]}, headers={"X-Custom": "c1"})
    assert r.status == 201
    assert r.headers["X-Echo"] == "yes"
    body = r.json()
    assert body["path_params"] == {"id": "abc"}
    assert body["query_params"] == {"x": "1", "y": "two"}
    assert body["body"] == {"hello": "wörld", "n": [1, 2]}
    assert body["method"] == "POST"
    assert body["custom"] == "c1"  # headers arrive lower-cased
    assert body["content_type"].startswith("application/json")


async def test_non_json_body_is_null_but_streamed(tester: MotiaTester) -> None:
    payload = b"\x00\x01binary" * 50_000  # 400 KB, several channel frames
    r = await tester.post("/compat/raw", data=payload, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200
    assert r.json() == {"length": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}


async def test_binary_response_streams_intact(tester: MotiaTester) -> None:
    r = await tester.get("/compat/binary")
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.body == bytes(range(256)) * 1024


async def test_handler_error_is_500_with_error_id(tester: MotiaTester) -> None:
    r = await tester.get("/compat/error")
    assert r.status == 500
    body = r.json()
    assert body["error"] == "internal server error"
    assert len(body["error_id"]) > 4


async def test_unknown_route_is_404_and_wrong_method_405(tester: MotiaTester) -> None:
    r = await tester.get("/no/such/route")
    assert r.status == 404
    r = await tester.request("DELETE", "/compat/echo/abc")  # known path, wrong method (axum: 405)
    assert r.status == 405 and r.headers["Allow"] == "POST"


async def test_timeout_is_504(tester: MotiaTester) -> None:
    started = time.monotonic()
    r = await tester.get("/compat/slow?s=10")
    assert r.status == 504
    assert time.monotonic() - started < 8


async def test_status_codes_pass_through(tester: MotiaTester) -> None:
    for code in (200, 204, 400, 409, 503):
        r = await tester.post(f"/compat/status/{code}")
        assert r.status == code


async def test_no_request_size_limit(tester: MotiaTester) -> None:
    """Like engine 0.8.3, the stand-in takes any body size (nginx limits it in production)."""
    payload = b"x" * (11 * 1024 * 1024)
    r = await tester.post("/compat/raw", data=payload, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200
    assert r.json() == {"length": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}


async def emit_until_a_handles(tester: MotiaTester, first: int) -> tuple[int, str]:
    """Emit to compat.fanout until Compat Fanout A (which logs) got one: (n, trace id).

    Its two subscribers compete (engine 0.8.3, Q1): each message reaches one of them, the one
    whose worker polls first. A burst of 15 is more than one worker's 10 permits, so both
    get some."""
    for start in range(first, first + 45, 15):
        ns = list(range(start, start + 15))
        rs = await asyncio.gather(*(tester.post("/compat/emit", json_body={"topic": "compat.fanout", "data": {"n": n}}) for n in ns))
        assert all(r.status == 202 for r in rs)
        await tester.wait_idle()
        state = await tester.state_list("compat.fanout")
        for n in ns:
            assert (f"A:{n}" in state) != (f"B:{n}" in state), f"message {n} not handled exactly once: {state}"
        for n, r in zip(ns, rs):
            if f"A:{n}" in state:
                return n, r.json()["trace_id"]
    raise AssertionError("Compat Fanout A never got a message")


async def test_subscribers_compete_and_the_trace_follows(tester: MotiaTester) -> None:
    watch = await tester.watch("compat.fanout")
    n, trace_id = await emit_until_a_handles(tester, 1)
    await watch.wait_for(n)
    # The HTTP request's trace follows the message into the one handler, logs included.
    trace = await tester.trace(trace_id)
    kinds = sorted((i["kind"], i["function_id"]) for i in trace["invocations"])
    assert [k for k, _ in kinds].count("queue") == 1
    logs = await tester.logs(trace_id, wait_for="fanout A got")
    assert any(rec["message"] == "fanout A got" and rec["fields"] == {"n": n} for rec in logs)
    # Each line is attributed to its step (from the worker's spans, which follow in batches).
    deadline = time.monotonic() + 8
    while True:
        line = [r for r in await tester.logs(trace_id) if r["message"] == "fanout A got"][0]
        if line["step"] == "Compat Fanout A":
            break
        assert time.monotonic() < deadline, line
        await asyncio.sleep(0.2)


async def test_retry_then_success(tester: MotiaTester) -> None:
    await tester.enqueue("compat.flaky", {"key": "r1", "succeed_on": 3})
    await tester.wait_idle()
    assert await tester.state_get("compat.flaky.done", "r1") == {"attempts": 3}
    assert not [d for d in await tester.dead_letters("compat.flaky") if d["job"]["data"]["key"] == "r1"]


async def test_retries_exhausted_go_to_the_dlq(tester: MotiaTester) -> None:
    await tester.enqueue("compat.flaky", {"key": "p1", "poison": True})
    await tester.enqueue("compat.flaky", {"key": "ok1"})
    await tester.wait_idle()
    dead = [d for d in await tester.dead_letters("compat.flaky") if d["job"]["data"]["key"] == "p1"]
    assert len(dead) == 1
    assert "poison message p1" in dead[0]["error"]
    assert dead[0]["job"]["attempts_made"] == 3  # the adapter's max_attempts (the step's maxRetries is ignored)
    assert await tester.state_get("compat.flaky.done", "ok1") is not None  # the poison did not block others
    # Listed, never redriven: the engine has no replay (the project's ledger has).
    assert (await tester.post("/_console/dlq/replay", json_body={"ids": [dead[0]["job"]["id"]]})).status in (404, 405)


async def test_cron_fires_every_second_without_doubles(tester: MotiaTester) -> None:
    before = (await tester.state_get("compat.cron", "ticks") or {}).get("n", 0)
    await asyncio.sleep(3.2)
    after = (await tester.state_get("compat.cron", "ticks") or {}).get("n", 0)
    assert 2 <= after - before <= 4
    jobs = (await tester.console("GET", "/_console/cron"))["jobs"]
    assert jobs and jobs[0]["expression"] == "* * * * * *" and jobs[0]["last_result"] == "ok"


async def test_manual_cron_trigger(tester: MotiaTester) -> None:
    jobs = (await tester.console("GET", "/_console/cron"))["jobs"]
    result = await tester.trigger_cron(jobs[0]["function_id"])
    assert result["result"] == "ok"
    r = await tester.post("/_console/cron/trigger", json_body={"function_id": "steps::Nope::trigger::0"}, headers={"X-Console-Request": "1"})
    assert r.status == 404


async def test_state_operations_through_console_and_worker(tester: MotiaTester) -> None:
    await tester.state_set("compat.state", "k", {"a": 1})
    assert await tester.state_get("compat.state", "k") == {"a": 1}
    groups = (await tester.console("GET", "/_console/state"))["groups"]
    assert "compat.state" in groups
    old = await tester.console("DELETE", "/_console/state/compat.state/k")
    assert old == {"old_value": {"a": 1}}
    assert await tester.state_get("compat.state", "k") is None


async def test_worker_killed_mid_run_loses_nothing(tester: MotiaTester) -> None:
    n = 60
    for i in range(n):
        await tester.enqueue("compat.slow", {"n": f"k{i}", "sleep": 0.1})
    await asyncio.sleep(0.3)
    await tester.kill_worker(functions=COMPAT_FUNCTIONS)
    await tester.wait_idle(timeout=60)
    runs = await tester.state_list("compat.slow")
    assert all(f"k{i}" in runs for i in range(n)), "a message was lost"
    assert not await tester.dead_letters("compat.slow")


async def test_functions_listing(tester: MotiaTester) -> None:
    data = await tester.console("GET", "/_console/functions")
    ids = {f["function_id"] for f in data["functions"]}
    assert "steps::Compat Api::trigger::http(POST /compat/echo/:id)" in ids
    http = [t for t in data["triggers"] if t["trigger_type"] == "http"]
    assert any(t["config"]["api_path"] == "compat/echo/:id" for t in http)
    assert data["workers"][0]["runtime"] == "python"


async def test_cli_verbs_against_the_running_engine(tester: MotiaTester) -> None:
    """The `iii-cli`-style verbs print what the engine holds."""
    import sys

    async def cli(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "iii_local", "--engine", tester.base_url, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()
        return out.decode()

    assert "steps::Compat Api::trigger::http(POST /compat/echo/:id)" in await cli("flow", "list")
    await tester.state_set("compat.cli", "k", {"v": 1})
    assert "compat.cli" in await cli("state", "ls")
    assert '"v": 1' in await cli("state", "get", "compat.cli", "k")
    await cli("state", "set", "compat.cli", "k2", '{"w": 2}')
    assert await tester.state_get("compat.cli", "k2") == {"w": 2}
    await cli("state", "delete", "compat.cli", "k2")
    assert await tester.state_get("compat.cli", "k2") is None
    _, trace_id = await emit_until_a_handles(tester, 1000)
    await tester.logs(trace_id, wait_for="fanout A got")
    assert "fanout A got" in await cli("logs", "--trace", trace_id)
    trace_out = await cli("trace", trace_id)
    assert "Compat Fanout A" in trace_out and "queue" in trace_out
    assert "compat.fanout" in await cli("queue", "ls")
    await cli("dlq", "ls")  # exits 0 (its content depends on earlier tests)
    assert "* * * * * *" in await cli("cron", "ls")
    assert '"result": "ok"' in await cli("cron", "trigger", "steps::Compat Cron::trigger::cron(* * * * * *)")
