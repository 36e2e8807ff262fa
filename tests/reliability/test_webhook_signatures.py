"""Webhook signatures under attack: forged, replayed with a changed body, wrong webhook id,
legacy header — refused with 401 and nothing queued; the genuine ones pass (both headers)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

from iii_local.testing import MotiaTester
from services.espocrm_webhooks import legacy_signature, php_json_encode, sign_body
from tests.e2e import WEBHOOK_ID, WEBHOOK_SECRET

ENDPOINT = "/vmh/webhook/document/update"


async def _post(stack: MotiaTester, body: bytes, headers: dict[str, str]) -> tuple[int, list[dict]]:
    r = await stack.post(ENDPOINT, data=body, headers={"Content-Type": "application/json", **headers})
    trace = r.headers.get("x-iii-trace-id", "")
    msgs = await stack.messages(trace) if trace else []
    assert trace, "every answer carries its trace id"
    return r.status, msgs


def _body() -> bytes:
    return php_json_encode([{"id": f"sig{uuid.uuid4().hex[:12]}", "name": "Vertrag/2026 ü"}])


async def test_genuine_signatures_are_accepted(stack: MotiaTester) -> None:
    body = _body()
    status, msgs = await _post(stack, body, {"Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, body)})
    assert status == 200 and len(msgs) == 1
    body = _body()
    status, msgs = await _post(stack, body, {"X-Signature": legacy_signature(WEBHOOK_ID, WEBHOOK_SECRET, body)})
    assert status == 200 and len(msgs) == 1


async def test_forged_and_tampered_signatures_are_refused(stack: MotiaTester) -> None:
    body = _body()
    good = sign_body(WEBHOOK_ID, WEBHOOK_SECRET, body)
    tampered = body.replace(b"Vertrag", b"Vertraq")
    cases = {
        "missing": {},
        "forged secret": {"Signature": sign_body(WEBHOOK_ID, "not-the-secret", body)},
        "wrong webhook id": {"Signature": sign_body("other-hook", WEBHOOK_SECRET, body)},
        "garbage": {"Signature": "!!!not base64!!!"},
        "empty": {"Signature": ""},
        "legacy forged": {"X-Signature": legacy_signature(WEBHOOK_ID, "nope", body)},
        "legacy as hex in new header": {"Signature": base64.b64encode(WEBHOOK_ID.encode() + b":" + hmac.new(b"x", body, hashlib.sha256).digest()).decode()},
    }
    for name, headers in cases.items():
        status, msgs = await _post(stack, body, headers)
        assert status == 401, f"{name}: {status}"
        assert msgs == [], f"{name}: queued {msgs}"
    # Replayed signature over a changed body.
    status, msgs = await _post(stack, tampered, {"Signature": good})
    assert status == 401 and msgs == []
    # The token header is no substitute when signatures are configured.
    status, msgs = await _post(stack, body, {"X-Webhook-Token": WEBHOOK_SECRET})
    assert status == 401 and msgs == []


async def test_signed_but_malformed_is_400_and_queues_nothing(stack: MotiaTester) -> None:
    for body in (b"{not json", json.dumps({"no": "id"}).encode(), b"[]", json.dumps([{"id": "x"}] * 51).encode(), b'"a string"'):
        status, msgs = await _post(stack, body, {"Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, body)})
        assert status == 400, (body[:40], status)
        assert msgs == []


async def test_partially_valid_batch_reports_rejects_and_collapses_duplicates(stack: MotiaTester) -> None:
    good = f"pv{uuid.uuid4().hex[:12]}"
    body = json.dumps([{"id": good}, {"id": "bad id with spaces"}, {"id": good}, 42]).encode()
    r = await stack.post(ENDPOINT, data=body, headers={"Content-Type": "application/json", "Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, body)})
    assert r.status == 200
    answer = r.json()
    assert answer["accepted"] == 1
    assert [x["index"] for x in answer["rejected"]] == [1, 3]
