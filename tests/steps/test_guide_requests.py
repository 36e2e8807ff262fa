"""The firm's guide's "Test HTTP Endpoints" requests, sent as written, through the real stack.

The guide sends its test bodies with `curl -H "Content-Type: application/json"` and no
credentials, which is how a sandbox without `ESPOCRM_WEBHOOK_SECRETS`/`ESPOCRM_WEBHOOK_TOKEN`
(`make run`) takes them: so this module runs its own stand-in engine and worker over
src/steps in that open mode (the session's simulators, a Redis database of its own). The
signed variant of the document body (as nginx forwards EspoCRM's webhooks) runs in the
session stack below; the parties' in test_beteiligte_sync.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from iii_local.testing import MotiaTester
from simulators.sandbox import Simulators
from tests.e2e import ROOT, stack_env
from tests.reliability.private_stack import db_url, flush_redis
from tests.steps.ledger_helpers import settle_ledger
from tests.steps.test_document_sync import signed

pytestmark = pytest.mark.timeout(120)

OPEN_MODE_DB = 12
AS_CURL_SENDS = {"Content-Type": "application/json"}
GUIDE_DOCUMENT_BODY = b'[{"id": "test123", "entityType": "CDokumente"}]'
GUIDE_PARTY_BODY = b'{"entity_type": "CBeteiligte", "entity_id": "abc123", "action": "create"}'
ENDPOINTS = [
    (entity_path, entity_type, topic_base, action)
    for entity_path, entity_type, topic_base in (
        ("document", "CDokumente", "vmh.document"),
        ("beteiligte", "CBeteiligte", "vmh.beteiligte"),
        ("bankverbindungen", "CBankverbindungen", "vmh.bankverbindungen"),
    )
    for action in ("create", "update", "delete")
]


@pytest.fixture(scope="module")
async def open_stack(redis_url: str, sims: Simulators) -> AsyncIterator[MotiaTester]:
    """The project's steps in sandbox mode with no webhook credentials (the endpoints are open,
    as `make run` starts them)."""
    url = db_url(redis_url, OPEN_MODE_DB)
    await flush_redis(url)
    env = {k: v for k, v in stack_env(url).items() if k != "ESPOCRM_WEBHOOK_SECRETS"}
    tester = MotiaTester(ROOT / "src" / "steps", queue_defaults={"backoff_ms": 200})
    tester.env = {**env, **sims.env()}
    await tester.start(wait_functions=1, timeout=60)
    yield tester
    await tester.stop()


async def post(stack: MotiaTester, path: str, body: bytes) -> tuple[int, Any, list[dict[str, Any]]]:
    """POST as the guide's curl does; (status, answer, the messages the request queued)."""
    r = await stack.post(path, data=body, headers=AS_CURL_SENDS)
    return r.status, r.json(), await stack.messages(r.headers.get("x-iii-trace-id", ""))


async def test_the_guides_document_request_is_accepted(open_stack: MotiaTester) -> None:
    status, answer, msgs = await post(open_stack, "/vmh/webhook/document/create", GUIDE_DOCUMENT_BODY)
    assert (status, answer) == (200, {"accepted": 1, "rejected": []})
    assert [(m["topic"], m["data"]["entity_type"], m["data"]["entity_id"], m["data"]["action"]) for m in msgs] == [
        ("vmh.document.create", "CDokumente", "test123", "create")
    ]


async def test_the_guides_beteiligte_request_is_accepted(open_stack: MotiaTester) -> None:
    status, answer, msgs = await post(open_stack, "/vmh/webhook/beteiligte/create", GUIDE_PARTY_BODY)
    assert (status, answer) == (200, {"accepted": 1, "rejected": []})
    assert [(m["topic"], m["data"]["entity_type"], m["data"]["entity_id"], m["data"]["action"]) for m in msgs] == [
        ("vmh.beteiligte.create", "CBeteiligte", "abc123", "create")
    ]
    assert msgs[0]["data"]["changed_fields"] == []


@pytest.mark.parametrize(("path", "reason"), [
    ("/vmh/webhook/bankverbindungen/create", "entity_type 'CBeteiligte' does not match this endpoint (CBankverbindungen)"),
    ("/vmh/webhook/document/create", "entity_type 'CBeteiligte' does not match this endpoint (CDokumente)"),
    ("/vmh/webhook/beteiligte/update", "action 'create' does not match this endpoint (update)"),
])
async def test_the_guides_beteiligte_body_at_another_endpoint_is_400_with_the_reason(open_stack: MotiaTester, path: str, reason: str) -> None:
    status, answer, msgs = await post(open_stack, path, GUIDE_PARTY_BODY)
    assert status == 400 and reason in answer["error"], answer
    assert msgs == []


@pytest.mark.parametrize(("entity_path", "entity_type", "topic_base", "action"), ENDPOINTS)
async def test_every_entity_webhook_takes_the_manual_test_shape(
    open_stack: MotiaTester, entity_path: str, entity_type: str, topic_base: str, action: str
) -> None:
    rid = uuid.uuid4().hex[:17]
    body = json.dumps({"entity_type": entity_type, "entity_id": rid, "action": action}).encode()
    status, answer, msgs = await post(open_stack, f"/vmh/webhook/{entity_path}/{action}", body)
    assert (status, answer) == (200, {"accepted": 1, "rejected": []})
    assert [(m["topic"], m["data"]["entity_id"]) for m in msgs] == [(f"{topic_base}.{action}", rid)]


async def test_the_guides_document_body_is_accepted_signed_and_a_wrong_type_refused(stack: MotiaTester) -> None:
    """The guide's `[{"id", "entityType": "CDokumente"}]`, signed and forwarded as nginx does
    (the guide's unsigned curl: above); another entity type → 400, nothing queued."""
    doc_id = uuid.uuid4().hex[:17]
    wrong = json.dumps([{"id": doc_id, "entityType": "CBeteiligte"}]).encode()
    r = await stack.request("POST", "/vmh/webhook/document/create", data=wrong, headers=signed(wrong))
    assert r.status == 400 and "entity_type 'CBeteiligte' does not match this endpoint (CDokumente)" in r.json()["error"], r.text
    assert await stack.messages(r.headers.get("x-iii-trace-id", "")) == []
    body = json.dumps([{"id": doc_id, "entityType": "CDokumente"}]).encode()
    r = await stack.request("POST", "/vmh/webhook/document/create", data=body, headers=signed(body))
    assert r.status == 200 and r.json() == {"accepted": 1, "rejected": []}, r.text
    msgs = await stack.messages(r.headers.get("x-iii-trace-id", ""))
    assert [(m["topic"], m["data"]["entity_id"]) for m in msgs] == [("vmh.document.create", doc_id)]
    await settle_ledger(stack)
