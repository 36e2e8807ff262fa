"""The ledger at the edges: webhook intake (mark before 200, 503 when the ledger is down,
the request channel never read when the engine parsed the body), queue handler glue,
the operators' API helpers and CLI, and every queue topic belonging to one ledger kind."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from iii_local.testing import MockRequest, mock_context
from services.calendar import jobs as calendar_sync_jobs
from services.clients.espocrm_webhooks import sign_body
from services.documents import events as document_events
from services.documents.events import document_webhook_events
from services.parties.events import TOPIC_PARTY
from services.platform.ledger import Ledger, RunOutcome, SyncKind, policies, read_tag
from services.platform.ledger import __main__ as cli
from services.platform.ledger.ops import OpsRejected, authorize, ledger_view, parse_replay_body, parse_view_query
from services.platform.models import EntityAction, EntityType, WebhookItem
from services.platform.redis import get_redis
from services.platform.settings import load_settings
from services.webhooks.intake import engine_streams_raw_body
from simulators.runner import free_port
from src.glue import queue_handlers
from src.glue.webhook import accept_webhook

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = load_settings({"APP_MODE": "sandbox", "ESPOCRM_WEBHOOK_SECRETS": "hook:secret"})


def new_ledger(redis_url: str, **kw: Any) -> Ledger:
    return Ledger(get_redis(redis_url), prefix=f"i-{uuid.uuid4().hex[:10]}", **kw)


class NeverReader:
    """A request channel the engine holds open and empty (row H1): reading it hangs."""

    def __init__(self) -> None:
        self.reads = 0

    async def read_all(self) -> bytes:
        self.reads += 1
        await asyncio.sleep(3600)
        return b""


class ParsedJsonRequest(MockRequest):
    reader: Any = None

    @property
    def request_body(self) -> Any:  # type: ignore[override]
        return self.reader


def signed_request(items: list[dict[str, Any]]) -> ParsedJsonRequest:
    raw = json.dumps(items, separators=(",", ":")).encode()
    req = ParsedJsonRequest(body=items, headers={"Content-Type": "application/json", "Signature": sign_body("hook", "secret", raw)})
    req.reader = NeverReader()
    return req


# --------------------------------------------------------------------------- webhook intake


async def test_webhook_marks_every_item_before_answering_and_enqueues_tagged(redis_url: str) -> None:
    ledger, ctx = new_ledger(redis_url), mock_context("http")
    ids = [f"w{i}{uuid.uuid4().hex[:6]}" for i in range(3)]
    req = signed_request([{"id": i, "name": "n"} for i in ids])
    resp = await asyncio.wait_for(
        accept_webhook(req, ctx, settings=SETTINGS, model=WebhookItem, to_events=document_webhook_events(EntityAction.UPDATE), ledger=ledger),
        timeout=5,
    )
    assert resp.status == 200 and resp.body == {"accepted": 3, "rejected": []}
    assert req.reader.reads == 0, "the request channel of a parsed JSON body must never be read (H1)"
    for event, entity in zip(ctx.enqueued, ids):
        kind, seq = read_tag(event["data"])  # type: ignore[misc]
        info = await ledger.get(kind, entity)
        assert kind is SyncKind.DOCUMENT and info is not None and info.seq == seq and info.state == "pending"


async def test_webhook_answers_503_and_queues_nothing_when_the_ledger_is_down() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    ctx = mock_context("http")
    req = signed_request([{"id": "x1", "name": "n"}])
    resp = await accept_webhook(req, ctx, settings=SETTINGS, model=WebhookItem,
                                to_events=document_webhook_events(EntityAction.UPDATE), ledger=Ledger(dead))
    assert resp.status == 503 and "ledger" in resp.body["error"]
    assert ctx.enqueued == []
    await dead.aclose()


async def test_webhook_still_200_when_enqueue_fails_after_marking(redis_url: str) -> None:
    ledger = new_ledger(redis_url, grace=0.0)
    ctx = mock_context("http", fail_enqueue=RuntimeError("engine restarting"))
    entity = f"e{uuid.uuid4().hex[:8]}"
    resp = await accept_webhook(signed_request([{"id": entity, "name": "n"}]), ctx, settings=SETTINGS, model=WebhookItem,
                                to_events=document_webhook_events(EntityAction.UPDATE), ledger=ledger)
    assert resp.status == 200
    assert [m.entity_id for m in await ledger.due_batch(10)] == [entity]  # the sweeper delivers it


async def test_echo_of_our_own_write_is_neither_marked_nor_queued(redis_url: str) -> None:
    ledger, ctx = new_ledger(redis_url), mock_context("http")
    resp = await accept_webhook(signed_request([{"id": "echo1", "xaiSyncStatus": "clean", "modifiedAt": "x"}]), ctx,
                                settings=SETTINGS, model=WebhookItem, to_events=document_webhook_events(EntityAction.UPDATE),
                                ledger=ledger)
    assert resp.status == 200 and ctx.enqueued == [] and await ledger.get(SyncKind.DOCUMENT, "echo1") is None


async def test_raw_bytes_are_read_only_when_the_engine_streams_them() -> None:
    assert not engine_streams_raw_body(MockRequest(body=[{"id": "a"}], headers={"Content-Type": "application/json"}))
    # Invalid JSON under a JSON content type: the engine gives body=null and still holds the channel (H1).
    assert not engine_streams_raw_body(MockRequest(body=None, headers={"content-type": "application/json; charset=utf-8"}))
    assert engine_streams_raw_body(MockRequest(body=None, headers={"Content-Type": "application/octet-stream"}))
    # The engine's JSON test is case-sensitive: a mixed-case JSON type is streamed like any other.
    assert engine_streams_raw_body(MockRequest(body=None, headers={"Content-Type": "Application/JSON"}))
    raw = json.dumps([{"id": "r1", "name": "n"}]).encode()
    req = MockRequest(body=None, raw_body=raw, headers={"Content-Type": "application/octet-stream", "Signature": sign_body("hook", "secret", raw)})
    ctx = mock_context("http")

    class FakeLedger:
        async def mark_events(self, events: Any, once: Any = None) -> list[Any]:
            return []

    resp = await accept_webhook(req, ctx, settings=SETTINGS, model=WebhookItem,
                                to_events=document_webhook_events(EntityAction.UPDATE), ledger=FakeLedger())
    assert resp.status == 200 and resp.body["accepted"] == 1


async def test_invalid_json_with_json_content_type_is_400_without_waiting() -> None:
    req = ParsedJsonRequest(body=None, headers={"Content-Type": "application/json", "Signature": "x"})
    req.reader = NeverReader()
    settings = load_settings({"APP_MODE": "sandbox"})  # open mode: straight to parsing
    resp = await asyncio.wait_for(
        accept_webhook(req, mock_context("http"), settings=settings, model=WebhookItem,
                       to_events=document_webhook_events(EntityAction.UPDATE), ledger=object()),
        timeout=5,
    )
    assert resp.status == 400 and req.reader.reads == 0


async def test_the_replay_record_lasts_the_configured_window_and_only_signatures_get_one(redis_url: str) -> None:
    """ESPOCRM_WEBHOOK_REPLAY_SECONDS bounds the refusal: after it the same signed body is
    accepted again. Token mode keeps no record: a URL token is not bound to the body."""
    ledger = new_ledger(redis_url)
    items = [{"id": f"rw{uuid.uuid4().hex[:8]}", "name": "n"}]

    async def send(settings: Any, request: Any) -> int:
        resp = await accept_webhook(request, mock_context("http"), settings=settings, model=WebhookItem,
                                    to_events=document_webhook_events(EntityAction.UPDATE), ledger=ledger)
        return int(resp.status)

    signed = load_settings({"APP_MODE": "sandbox", "ESPOCRM_WEBHOOK_SECRETS": "hook:secret", "ESPOCRM_WEBHOOK_REPLAY_SECONDS": "1"})
    assert [await send(signed, signed_request(items)) for _ in range(2)] == [200, 409]
    await asyncio.sleep(1.2)
    assert await send(signed, signed_request(items)) == 200
    token = "t" * 32
    by_token = load_settings({"APP_MODE": "sandbox", "ESPOCRM_WEBHOOK_TOKEN": token})
    for _ in range(2):
        request = MockRequest(body=items, headers={"Content-Type": "application/json"}, query_params={"token": token})
        assert await send(by_token, request) == 200


# --------------------------------------------------------------------------- handler glue


async def test_party_handler_drops_malformed_events_and_runs_tagged_ones(redis_url: str) -> None:
    ledger, ctx = new_ledger(redis_url), mock_context()
    assert await queue_handlers.handle_sync_event({"entity_id": "bad id!"}, ctx, EntityType.BETEILIGTE, ledger=ledger) is None
    assert any("malformed" in m for m in ctx.logger.messages("error"))
    await ledger.mark(SyncKind.PARTY, "someone-else", "vmh.beteiligte.update", {"entity_id": "someone-else"})  # counter ≥ 1
    stale = {"entity_type": "CBeteiligte", "entity_id": "p-gone", "action": "update", "ledger": {"kind": "party", "seq": 1}}
    report = await queue_handlers.handle_sync_event(stale, ctx, EntityType.BETEILIGTE, ledger=ledger)
    assert report.outcome is RunOutcome.NOTHING  # no mark: no API call at all


# --------------------------------------------------------------------------- operators


def test_ops_authorization() -> None:
    with pytest.raises(OpsRejected) as off:
        authorize({"Authorization": "Bearer x"}, None)
    assert off.value.status == 503
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"authorization": "Basic tok"}):
        with pytest.raises(OpsRejected) as bad:
            authorize(headers, "tok")
        assert bad.value.status == 401
    authorize({"authorization": "Bearer tok"}, "tok")


def test_ops_request_parsing() -> None:
    assert parse_view_query({"kind": "party", "dead": "1", "limit": "5"}) == (SyncKind.PARTY, True, 5)
    assert parse_view_query({}) == (None, False, 100)
    for bad in ({"kind": "nope"}, {"limit": "x"}, {"limit": "0"}):
        with pytest.raises(OpsRejected):
            parse_view_query(bad)
    assert parse_replay_body(None) == (None, None)
    assert parse_replay_body({"kind": "document", "ids": ["a"]}) == (SyncKind.DOCUMENT, ["a"])
    for bad_body in ([1], {"ids": "a"}, {"other": 1}, {"ids": [""]}):
        with pytest.raises(OpsRejected):
            parse_replay_body(bad_body)


async def test_ops_view_and_cli_list_and_replay_dead_marks(redis_url: str) -> None:
    ledger = new_ledger(redis_url)
    await ledger.mark(SyncKind.PARTY, "p1", "vmh.beteiligte.update", {"entity_id": "p1"})
    claim = await ledger.begin(SyncKind.PARTY, "p1")
    assert claim is not None
    await ledger.fail(claim, "Advoware 400: Die PLZ ist ungültig.", retryable=False)
    view = await ledger_view(ledger, dead=True)
    assert view["stats"]["party"]["dead"] == 1 and view["marks"][0]["last_error"].startswith("Advoware 400")
    out = io.StringIO()
    assert await cli.run(["ls", "--dead", "--kind", "party"], out=out, ledger=ledger) == 0
    assert "p1" in out.getvalue() and "PLZ" in out.getvalue()
    out = io.StringIO()
    await cli.run(["replay", "--kind", "party"], out=out, ledger=ledger)
    assert "replayed party p1" in out.getvalue()
    info = await ledger.get(SyncKind.PARTY, "p1")
    assert info is not None and info.state == "pending" and info.attempts == 0


# --------------------------------------------------------------------------- topics


def test_policy_topics_match_the_services_and_the_steps() -> None:
    assert policies.TOPIC_DOCUMENT_CREATE == document_events.TOPIC_DOCUMENT_CREATE
    assert policies.TOPIC_DOCUMENT_UPDATE == document_events.TOPIC_DOCUMENT_UPDATE
    assert policies.TOPIC_DOCUMENT_DELETE == document_events.TOPIC_DOCUMENT_DELETE
    assert policies.TOPIC_COLLECTION_ENSURE == document_events.TOPIC_COLLECTION_ENSURE
    assert policies.TOPIC_CALENDAR_ALL == calendar_sync_jobs.TOPIC_SYNC_ALL
    assert policies.TOPIC_CALENDAR_EMPLOYEE == calendar_sync_jobs.TOPIC_SYNC_EMPLOYEE
    assert set(policies.POLICIES[SyncKind.PARTY].topics) == {f"{TOPIC_PARTY}.{a}" for a in ("create", "update", "delete")}
    saved = dict(os.environ)
    os.environ.update({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env"})
    subscribed: set[str] = set()
    try:
        for path in sorted((ROOT / "src" / "steps").rglob("*_step.py")):
            spec = importlib.util.spec_from_file_location("ledger_topics_" + path.stem, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            subscribed |= {t.topic for t in module.config["triggers"] if getattr(t, "type", None) == "queue"}
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert subscribed == policies.all_topics(), "every queued topic must belong to exactly one ledger kind"
