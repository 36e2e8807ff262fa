"""The audit report (JSON, words, storage, round trip of findings), the API's input checks, the
entity references, the call meter and the per-entity activity ring."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.clients.http import CallBudgetSpent, CallMeter, JsonHttpClient, metered
from services.ops.api import parse_repair, parse_resync, parse_run, parse_search
from services.ops.audit import store as store_module
from services.ops.audit.collections import Owner, membership_findings
from services.ops.audit.model import AuditReport, Check, CheckRun, Finding
from services.ops.audit.store import ReportStore
from services.ops.entities import BadReference, OpsEntityType, parse_ref
from services.platform import activity
from services.platform.ledger.ops import OpsRejected
from services.platform.logging import get_service_logger
from services.platform.models import EntityType
from simulators.runner import start_app
from simulators.xai import create_app


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def a_finding() -> Finding:
    found, _ = membership_findings(Owner(EntityType.ACCOUNT, "acc1", "ACME", "col-1", True), "col-1",
                                   [{"id": "d1", "name": "a.pdf", "fileId": "f", "xaiId": "file-1", "xaiSyncStatus": "clean",
                                     "xaiCollections": ["col-1"]}], [])
    return found[0]


def test_a_report_in_words_names_findings_repairs_and_what_was_not_checked() -> None:
    report = AuditReport("r1", 1_700_000_000.0, "http", 100, 20.0, finished_at=1_700_000_003.0, calls={"espocrm": 4, "xai": 2},
                         wanted=[Check.COLLECTIONS, Check.DOCUMENTS, Check.PARTIES])
    report.checks = [CheckRun(Check.COLLECTIONS, examined={"entities": 3}), CheckRun(Check.DOCUMENTS, complete=False,
                                                                                       note="call budget of 100 spent")]
    report.findings = [a_finding()]
    text = report.text()
    assert "1 finding(s)" in text and "6 API call(s) of 100" in text
    assert "documents: call budget of 100 spent" in text and "not run: parties" in text
    assert report.findings[0].id in text and "Repair: drop col-1" in text
    body = report.as_json()
    assert body["complete"] is False and body["not_run"] == ["parties"] and body["counts"]["document_not_in_collection"] == 1
    assert body["by_type"] == {"document_not_in_collection": 1} and body["repairable"] == 1


def test_findings_survive_the_json_round_trip_with_their_id_and_repair() -> None:
    f = a_finding()
    back = Finding.from_json(f.as_json())
    assert back == f and back.id == f.id


async def test_the_store_keeps_the_last_report_its_history_and_the_repairs(redis: Any) -> None:
    store = ReportStore(redis, prefix="opstest")
    await redis.delete("opstest:audit:last", "opstest:audit:history")
    assert await store.last() is None
    report = AuditReport("r2", 1.0, "cron", 10, 5.0, finished_at=2.0, findings=[a_finding()], checks=[CheckRun(c) for c in Check])
    await store.save(report)
    await store.note_repairs("r2", {report.findings[0].id: {"status": "queued"}})
    last = await store.last()
    assert last is not None and last["id"] == "r2" and last["findings_total"] == 1 and last["complete"] is True
    assert last["findings"][0]["repaired"] == {"status": "queued"}
    assert [h["id"] for h in await store.history()] == ["r2"]


async def test_the_store_keeps_at_most_max_stored_findings_listed_and_in_words(redis: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_STORED_FINDINGS", 1)
    first = a_finding()
    report = AuditReport("r3", 1.0, "cron", 10, 5.0, finished_at=2.0, findings=[first, dataclasses.replace(first, key="other")])
    body = await ReportStore(redis, prefix="opstest").save(report)
    assert body["findings_total"] == 2 and [f["id"] for f in body["findings"]] == [first.id]
    assert "- 2 document(s)" in body["text"] and "2. [" not in body["text"] and "1 more finding(s)" in body["text"]


@pytest.mark.parametrize(("query", "error"), [({}, "q is required"), ({"q": "  "}, "q is required"), ({"q": "x" * 201}, "at most"),
                                              ({"q": "a", "limit": "0"}, "between"), ({"q": "a", "limit": "x"}, "integer")])
def test_search_input_is_checked(query: dict[str, str], error: str) -> None:
    with pytest.raises(OpsRejected) as caught:
        parse_search(query)
    assert caught.value.status == 400 and error in caught.value.reason


def test_bodies_are_checked() -> None:
    assert parse_search({"q": [" Müller "], "limit": "5"}) == ("Müller", 5)
    assert parse_resync(None) is True and parse_resync({"full": False}) is False
    assert parse_run({"checks": ["parties"], "repair": True}) == ([Check.PARTIES], True)
    assert parse_repair({"all": True}) is None and parse_repair({"ids": ["a", "a", "b"]}) == ["a", "b"]
    for bad in ([1], {"checks": ["nope"]}, {"checks": []}, {"repair": "yes"}, {"x": 1}):
        with pytest.raises(OpsRejected):
            parse_run(bad)
    for bad in ({}, {"ids": []}, {"ids": ["a"], "all": True}, {"all": False}, {"ids": [3]}):
        with pytest.raises(OpsRejected):
            parse_repair(bad)
    with pytest.raises(OpsRejected):
        parse_resync({"full": "no"})


def test_entity_references_from_path_parameters() -> None:
    ref = parse_ref("CDokumente", "66a0f%2Dx1")
    assert ref.type is OpsEntityType.DOCUMENT and ref.id == "66a0f-x1" and ref.path == "/ops/entities/document/66a0f-x1"
    assert parse_ref("employee", "M%C3%BC").id == "Mü"
    assert [k.value for k, _ in parse_ref("party", "p1").ledger_keys()] == ["party", "collection"]
    assert parse_ref("account", "a1").activity_entities() == ["collection:Account:a1"]
    for raw_type, raw_id in (("nope", "x"), ("document", "a b"), ("document", "../x"), ("employee", "A:B"), ("party", "")):
        with pytest.raises(BadReference):
            parse_ref(raw_type, raw_id)


async def test_the_call_meter_counts_every_request_and_refuses_past_its_limit() -> None:
    running = await start_app(create_app("k", "m", processing_delay=0))
    client = JsonHttpClient(running.url)
    try:
        with metered(CallMeter(2)) as meter:
            for _ in range(2):
                try:
                    await client.request("GET", "/_sim/faults")
                except Exception:  # noqa: BLE001 - only the count matters here
                    pass
            with pytest.raises(CallBudgetSpent):
                await client.request("GET", "/_sim/faults")
            assert meter.total == 2 and meter.left == 0 and meter.calls == {"http": 2}
        await client.request("GET", "/_sim/faults")  # outside the context: not counted, not refused
        assert meter.total == 2
    finally:
        await client.close()
        await running.stop()


async def test_activity_keeps_a_runs_lines_redacted_bounded_and_newest_first(redis: Any) -> None:
    log = activity.ActivityLog(redis, prefix="acttest")
    await redis.delete(log.key("document:d1"))
    with activity.collecting("document:d1", "trace-1") as run:
        logger = get_service_logger("t")
        logger.debug("not kept")
        logger.info("uploaded with Bearer abcdefgh12345678", token="secret-value", document_id="d1")

        async def inner() -> None:
            for i in range(activity.MAX_RUN_LINES + 5):
                logger.warn(f"line {i}")

        await asyncio.create_task(inner())
    activity.note("info", "outside a run: not kept")
    assert await log.flush(run)
    lines = await log.recent(["document:d1"])
    assert len(lines) == activity.MAX_RUN_LINES + 1 and lines[0]["entity"] == "document:d1"
    texts = [r["message"] for r in lines]
    assert "line 34" in texts and "uploaded" not in " ".join(texts)  # the oldest fell out of the run's buffer
    assert any("earlier line(s) of this run not kept" in t for t in texts)
    assert all(r["trace_id"] == "trace-1" for r in lines)
    with activity.collecting("document:d2") as run2:
        get_service_logger("t").info("Bearer abcdefgh12345678 used", api_key="k-123")
    await log.flush(run2)
    [line] = await log.recent(["document:d2"])
    assert "abcdefgh12345678" not in line["message"] and "k-123" not in (line["fields"] or "")
    assert 0 < await redis.ttl(log.key("document:d2")) <= activity.TTL_SECONDS


def test_the_sandbox_has_a_public_ops_token_and_production_none() -> None:
    from services.platform.settings import load_settings

    sandbox = load_settings({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env"})
    assert sandbox.ops_token is not None and sandbox.ops_token.get_secret_value() == "sandbox-ops-token-public-not-a-secret"
    mine = load_settings({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env", "OPS_TOKEN": "x" * 40})
    assert mine.ops_token is not None and mine.ops_token.get_secret_value() == "x" * 40
