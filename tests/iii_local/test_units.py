"""Unit tests of the stand-in's parts that need no worker."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from iii_local.config import EngineConfigError, expand_env, load_config, parse_config
from iii_local.cron_expr import CronExpressionError, CronSchedule
from iii_local.engine import TriggerEntry
from iii_local.http_json import dumps, format_float, parse_body
from iii_local.http_routes import Resolution
from iii_local.jobs import Job
from iii_local.rest import Router, http_response_from_result
from iii_local.state import StateError, apply_ops
from iii_local.store import SqliteStore
from iii_local.telemetry import LogRecord, TelemetryStore, decode_frame, format_log_line, trace_id_of


def test_expand_env_defaults_and_missing() -> None:
    env = {"A": "1"}
    assert expand_env("x ${A} ${B:two} ${C:}", env) == "x 1 two "
    with pytest.raises(EngineConfigError, match="MISSING"):
        expand_env("${MISSING}", env)


def test_project_config_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    monkeypatch.delenv("III_REST_PORT", raising=False)
    cfg = load_config(Path(__file__).resolve().parents[2] / "iii-config.yaml")
    assert cfg.port == 49134
    assert cfg.rest is not None and cfg.rest.port == 3111
    assert cfg.queue is not None and cfg.queue.max_attempts == 3
    assert cfg.exec and "scripts/run_worker.py" in cfg.exec[0].exec[-1]
    assert "III_URL=ws://127.0.0.1:49134" in cfg.exec[0].exec[-1]
    assert cfg.exec[0].watch == []  # `make dev` fills it through III_WATCH_GLOBS
    monkeypatch.setenv("III_WATCH_GLOBS", '["src/**/*.py"]')
    assert load_config(Path(__file__).resolve().parents[2] / "iii-config.yaml").exec[0].watch == ["src/**/*.py"]


def test_config_rejects_unknown_exec_fields_and_bad_adapters() -> None:
    with pytest.raises(EngineConfigError):
        parse_config({"modules": [{"class": "modules::shell::ExecModule", "config": {"exec": ["x"], "bogus": 1}}]})
    with pytest.raises(EngineConfigError):
        parse_config({"modules": [{"class": "modules::queue::QueueModule", "config": {"adapter": {"class": "modules::queue::RabbitMQAdapter"}}}]})


def test_cron_six_and_seven_fields_and_weekday_numbering() -> None:
    spec = CronSchedule.parse("0 */15 * * * *")
    start = datetime(2026, 11, 22, 10, 7, 3, tzinfo=UTC).timestamp()
    assert datetime.fromtimestamp(spec.next_after(start), UTC) == datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
    # Engine weekdays: Sunday = 1. 2026-11-22 is a Sunday, so "1" means today.
    sunday = CronSchedule.parse("0 30 9 * * 1")
    nxt = datetime.fromtimestamp(sunday.next_after(datetime(2026, 11, 21, 12, tzinfo=UTC).timestamp()), UTC)
    assert nxt == datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    weekdays = CronSchedule.parse("0 30 9 * * 2-6")  # Monday–Friday
    nxt = datetime.fromtimestamp(weekdays.next_after(datetime(2026, 11, 21, 12, tzinfo=UTC).timestamp()), UTC)
    assert nxt.weekday() == 0  # Monday
    with_year = CronSchedule.parse("0 0 0 1 1 * 2030")
    nxt = datetime.fromtimestamp(with_year.next_after(datetime(2026, 1, 1, tzinfo=UTC).timestamp()), UTC)
    assert nxt.year == 2030
    for bad in ("* * * * *", "0 0 0 * * 8", "nonsense"):
        with pytest.raises(CronExpressionError):
            CronSchedule.parse(bad)


async def test_cron_job_lists_its_latest_finished_run_whole() -> None:
    """The console's last time, result, error and duration belong to one run: a skipped run
    after a failed one does not keep the failure's error."""
    from typing import Any, cast

    from iii_local.cron import CronJob, CronModule
    from iii_local.engine import CallContext, Engine, InvocationError, WorkerConnection

    engine = Engine(TelemetryStore())
    conditions = [True, False]

    async def condition(data: Any, ctx: CallContext) -> bool:
        return conditions.pop(0)

    async def handler(data: Any, ctx: CallContext) -> None:
        raise InvocationError("handler_error", "boom")

    engine.builtins.update({"steps::Nightly::condition": condition, "steps::Nightly::trigger::0": handler})
    trigger = TriggerEntry(id="t1", trigger_type="cron", function_id="steps::Nightly::trigger::0",
                           config={"expression": "0 0 3 * * *", "_condition_path": "steps::Nightly::condition"},
                           worker=cast(WorkerConnection, None))
    job = CronJob(trigger=trigger, schedule=CronSchedule.parse("0 0 3 * * *"))
    never = job.public()
    assert (never["last_fire"], never["last_result"], never["last_error"], never["last_duration_ms"], never["runs"]) == (None, None, None, None, 0)
    cron = CronModule(engine)
    assert (await cron.fire(job, manual=True))["error"] == "boom"
    failed = job.public()
    assert (failed["last_result"], failed["last_error"], failed["runs"]) == ("error", "boom", 1)
    assert failed["last_fire"] is not None and failed["last_duration_ms"] is not None
    assert (await cron.fire(job, manual=True))["result"] == "skipped"
    skipped = job.public()
    assert (skipped["last_result"], skipped["last_error"], skipped["runs"]) == ("skipped", None, 2)
    assert skipped["last_fire"] >= failed["last_fire"]


def test_state_update_ops() -> None:
    """builtins/kv.rs 451-545: `path` is one literal key, merge only at the root."""
    v = apply_ops(None, [{"type": "set", "path": "a.b", "value": 1}, {"type": "increment", "path": "n", "by": 2}])
    assert v == {"a.b": 1, "n": 2}
    v = apply_ops(v, [{"type": "merge", "path": "a", "value": {"c": 3}}, {"type": "decrement", "path": "n", "by": 1}, {"type": "remove", "path": "a.b"}])
    assert v == {"n": 1}
    with pytest.raises(StateError):
        apply_ops(v, [{"type": "explode"}])


def _trigger(tid: str, method: str, path: str) -> TriggerEntry:
    return TriggerEntry(tid, "http", f"f-{tid}", {"api_path": path, "http_method": method}, worker=None)  # type: ignore[arg-type]


def test_router_params_and_static_preference() -> None:
    r = Router()
    r.add(_trigger("1", "GET", "items/:id"))
    r.add(_trigger("2", "GET", "/items/special"))
    route, params = r.match("GET", "/items/42")  # type: ignore[misc]
    assert route.function_id == "f-1" and params == {"id": "42"}
    route, params = r.match("GET", "/items/special")  # type: ignore[misc]
    assert route.function_id == "f-2" and params == {}
    assert r.match("POST", "/items/42") is None
    assert r.match("GET", "/items/42/more") is None
    # axum/matchit: raw segments, a trailing slash is another path, 405 with Allow, HEAD on GET
    assert r.match("GET", "/items/a%2Fb") == (r.routes["GET:items/:id"], {"id": "a%2Fb"})
    assert r.resolve("GET", "/items/42/").kind is Resolution.NO_ROUTE
    assert r.resolve("GET", "/items/").kind is Resolution.NO_ROUTE
    r.add(_trigger("3", "POST", "items/:id"))
    wrong = r.resolve("DELETE", "/items/42")
    assert wrong.kind is Resolution.METHOD_NOT_ALLOWED and wrong.allow == "GET,HEAD,POST"
    assert r.resolve("HEAD", "/items/42").kind is Resolution.NOT_REGISTERED


def test_result_answer_reads_status_code_and_body_only() -> None:
    """types.rs 46-67 and `StatusCode::from_u16(code as u16)` (views.rs 397-407)."""
    assert http_response_from_result({"status_code": 404, "headers": {"X": "y"}, "body": None}) == (404, None)
    assert http_response_from_result({"status": 201, "body": {"a": 1}}) == (200, {"a": 1})  # `status` is not read
    assert http_response_from_result({"status_code": 201.0}) == (200, {})
    assert http_response_from_result({"status_code": 65536 + 201}) == (201, {})  # `as u16` wraps
    assert http_response_from_result({"status_code": True}) == (200, {})
    assert http_response_from_result("text") == (200, {})


def test_json_like_serde_json() -> None:
    """views.rs 269 (`serde_json::from_slice(..).unwrap_or(Null)`, BTreeMap keys) and axum `Json`."""
    assert list(parse_body(b'{"b": {"d": 1, "c": 2}, "a": 0}')) == ["a", "b"]
    assert list(parse_body(b'{"b": {"d": 1, "c": 2}}')["b"]) == ["c", "d"]
    assert parse_body(b"1e400") is None and parse_body(b"[NaN]") is None and parse_body(b"\xff") is None
    assert parse_body(b"[" * 127 + b"]" * 127) is not None and parse_body(b"[" * 128 + b"]" * 128) is None
    assert parse_body(b"9223372036854775807") == 2**63 - 1 and isinstance(parse_body(b"-9223372036854775809"), float)
    assert [format_float(v) for v in (1.0, 1e15, 1e16, 0.00001, 1.5e-7, -0.0, 123.25)] == [
        "1.0", "1000000000000000.0", "1e+16", "0.00001", "1.5e-7", "-0.0", "123.25"]
    assert dumps({"b": [1e-7, None, True], "a": "ü\n\x01"}) == b'{"a":"\xc3\xbc\\n\\u0001","b":[1e-7,null,true]}'
    assert dumps({"x": float("nan"), "id": "3e4f"}) == b'{"id":"3e4f","x":null}'


def test_otel_frames_decode_into_logs_and_spans() -> None:
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "timeUnixNano": "1700000000000000000", "severityNumber": 17, "severityText": "ERROR",
        "body": {"stringValue": "it broke"}, "traceId": "a" * 32, "spanId": "b" * 16,
        "attributes": [{"key": "log.data", "value": {"kvlistValue": {"values": [{"key": "id", "value": {"intValue": "7"}}]}}}],
    }]}]}]}
    kind, recs = decode_frame(b"LOGS" + json.dumps(logs).encode())
    assert kind == "logs" and recs[0].level == "error" and recs[0].fields == {"id": 7} and recs[0].trace_id == "a" * 32
    spans = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [{
        "traceId": "c" * 32, "spanId": "d" * 16, "name": "step", "startTimeUnixNano": "1", "endTimeUnixNano": "2000001",
        "status": {"code": 2, "message": "x"}, "attributes": []}]}]}]}
    kind, recs = decode_frame(b"OTLP" + json.dumps(spans).encode())
    assert kind == "spans" and recs[0].status == "error" and recs[0].to_dict()["duration_ms"] == pytest.approx(2.0)
    assert decode_frame(b"LOGS{not json") == ("", [])
    line = format_log_line(recs_log := decode_frame(b"LOGS" + json.dumps(logs).encode())[1][0])
    assert "ERROR" in line and "it broke" in line and '"id":7' in line and recs_log.trace_id in line


def test_telemetry_store_bounds_and_queries() -> None:
    t = TelemetryStore(max_logs=5, max_traces=2)
    for i in range(8):
        t.engine_log("info", f"m{i}", trace_id=f"{i % 3:032d}")
    assert len(t.logs) == 5
    assert len(t.traces) == 2
    assert [r.message for r in t.query_logs(after_seq=6)] == ["m6", "m7"]
    t.add_log(LogRecord(time=0.0, level="info", message="from the worker"))
    assert [r.message for r in t.query_logs(source="worker", limit=1)] == ["from the worker"]
    assert [r.message for r in t.query_logs(source="engine", limit=1)] == ["m7"]  # the newest engine line, not the worker's
    assert trace_id_of("00-" + "e" * 32 + "-" + "f" * 16 + "-01") == "e" * 32
    assert trace_id_of("garbage") is None


def test_job_backoff_doubles_and_step_retry_settings_are_not_kept() -> None:
    """builtins/queue.rs 93-104 (`calculate_backoff`), adapters/builtin/adapter.rs 194-202."""
    from iii_local.jobs import QueueMode, SubscriptionConfig

    job = Job.new("t", None, max_attempts=4, backoff_delay_ms=100)
    job.increment_attempts()
    assert job.calculate_backoff() == 100
    job.attempts_made = 3
    assert job.calculate_backoff() == 400
    job.attempts_made = 4
    assert job.exhausted
    sc = SubscriptionConfig.from_trigger({"maxRetries": 8, "backoffType": "fixed", "delaySeconds": 30, "visibilityTimeout": 1, "type": "fifo", "concurrency": 2})
    assert sc is not None and sc.mode == QueueMode.FIFO and sc.concurrency == 2
    assert not hasattr(sc, "delay_seconds") and not hasattr(sc, "visibility_timeout") and not hasattr(sc, "backoff_type")
    assert SubscriptionConfig.from_trigger({"type": "standard"}).mode == QueueMode.CONCURRENT  # type: ignore[union-attr]
    assert SubscriptionConfig.from_trigger({}) is None and SubscriptionConfig.from_trigger({"concurrency": -1}) is None


async def test_sqlite_store_survives_reopen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s.db"
    s = SqliteStore(path)
    await s.open()
    await s.kv_set("scope", "k", {"v": 1})
    await s.close()
    s2 = SqliteStore(path)
    await s2.open()
    assert await s2.kv_get("scope", "k") == {"v": 1}
    assert await s2.kv_scopes() == ["scope"]
    await s2.close()


async def test_redis_store_round_trip(redis_url: str) -> None:
    from iii_local.store import RedisStore

    s = RedisStore(redis_url, prefix="iii-test:")
    await s.open()
    await s.kv_set("scope", "k", [1, 2])
    assert await s.kv_list("scope") == [("k", [1, 2])]
    await s.kv_delete("scope", "k")
    assert await s.kv_scopes() == []
    await s.close()


def test_empty_env_default_is_not_the_string_none() -> None:
    import yaml

    doc = yaml.safe_load(expand_env("local_engine:\n  console_token: ${III_TEST_EMPTY:}\n", {}))
    assert parse_config(doc).local.console_token == ""


def test_log_lines_are_attributed_by_span_once_spans_arrive() -> None:
    from iii_local.telemetry import InvocationRecord, LogRecord, SpanRecord

    t = TelemetryStore()
    trace = "a" * 32
    a = t.start_invocation(InvocationRecord(trace_id=trace, function_id="steps::Fanout A::trigger::queue(x)", kind="queue", start=0, span_id="1" * 16))
    t.start_invocation(InvocationRecord(trace_id=trace, function_id="steps::Fanout B::trigger::queue(x)", kind="queue", start=0, span_id="2" * 16))
    # Both run at once: the log line of A's handler is first guessed wrong (B started last) ...
    t.add_log(LogRecord(time=0, level="info", message="fanout A got", trace_id=trace, span_id="3" * 16))
    assert t.query_logs(trace_id=trace)[0].step == "Fanout B"
    # ... and corrected when the worker's step span (child of A's engine span) arrives.
    t.add_span(SpanRecord(trace_id=trace, span_id="3" * 16, parent_span_id=a.span_id, name="Fanout A", start=0, end=1))
    assert t.query_logs(trace_id=trace)[0].step == "Fanout A"
    # Later log lines in that span are right from the start.
    t.add_log(LogRecord(time=1, level="info", message="again", trace_id=trace, span_id="3" * 16))
    assert t.query_logs(trace_id=trace)[-1].step == "Fanout A"
