"""Webhook attacks through the real stack (issue #14, "Webhooks"): the stand-in engine and the
real motia worker over src/steps, requests as the shipped nginx forwards them (raw bytes as
application/octet-stream, semantics row H2), the session's Redis. Each attack is refused with
a 4xx and queues nothing.

- A replay of a signed body accepted before (the same bytes under the same webhook id, with
  either signature header, to any webhook endpoint, or as JSON the engine parses) → 409.
- Copies of one signed body sent at once: exactly one is accepted.
- EspoCRM's retry after our 503 (the ledger could not record the marks) is not a replay.
- With signatures configured, a URL token alone (or a signature alone, when both are
  configured) does not authenticate.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from iii_local.testing import MotiaTester
from services.clients.espocrm_webhooks import legacy_signature, php_json_encode, sign_body
from simulators.sandbox import Simulators
from tests.e2e import ROOT, WEBHOOK_ID, WEBHOOK_SECRET, stack_env
from tests.reliability.private_stack import db_url, flush_redis

ENDPOINT = "/vmh/webhook/document/update"
AS_NGINX_FORWARDS = {"Content-Type": "application/octet-stream", "X-Original-Content-Type": "application/json"}
LEDGER_PREFIX = "ledger"  # LEDGER_KEY_PREFIX's default, which tests/e2e.py keeps
TOKEN = "tok-" + "0123456789abcdef" * 3
BOTH_MODES_DB = 13


async def _post(stack: MotiaTester, body: bytes, headers: dict[str, str], path: str = ENDPOINT) -> tuple[int, Any, list[dict[str, Any]]]:
    """POST one webhook; (status, answer, the messages its trace queued)."""
    r = await stack.post(path, data=body, headers=headers)
    trace = r.headers.get("x-iii-trace-id", "")
    assert trace, "every answer carries its trace id"
    return r.status, r.json(), await stack.messages(trace)


def _body(prefix: str = "rp") -> bytes:
    return php_json_encode([{"id": f"{prefix}{uuid.uuid4().hex[:12]}", "name": "Vertrag/2026 ü"}])


def _signed(body: bytes) -> dict[str, str]:
    return {**AS_NGINX_FORWARDS, "Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, body)}


def _replay_key(body: bytes) -> str:
    """The documented replay record of a signed body: {prefix}:once:replay:{sha256(id \\n bytes)}."""
    return f"{LEDGER_PREFIX}:once:replay:" + hashlib.sha256(WEBHOOK_ID.encode() + b"\n" + body).hexdigest()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_replayed_signed_body_is_refused_with_409_however_it_comes(stack: MotiaTester, redis: aioredis.Redis) -> None:
    body = _body()
    status, answer, msgs = await _post(stack, body, _signed(body))
    assert status == 200 and answer["accepted"] == 1 and len(msgs) == 1
    replays = {
        "the same request": (ENDPOINT, _signed(body)),
        "the legacy header only": (ENDPOINT, {**AS_NGINX_FORWARDS, "X-Signature": legacy_signature(WEBHOOK_ID, WEBHOOK_SECRET, body)}),
        "another webhook endpoint": ("/vmh/webhook/document/delete", _signed(body)),
        "as JSON the engine parses": (ENDPOINT, {"Content-Type": "application/json", "Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, body)}),
    }
    for name, (path, headers) in replays.items():
        status, answer, msgs = await _post(stack, body, headers, path)
        assert status == 409, f"{name}: {status} {answer}"
        assert "replay" in answer["error"], name
        assert msgs == [], f"{name}: queued {msgs}"
    ttl = await redis.ttl(_replay_key(body))
    assert 0 < ttl <= 600, f"the replay record {_replay_key(body)} should live ESPOCRM_WEBHOOK_REPLAY_SECONDS (600), ttl {ttl}"


async def test_copies_of_one_signed_body_sent_at_once_are_accepted_once(stack: MotiaTester) -> None:
    body = _body("cc")
    results = await asyncio.gather(*(_post(stack, body, _signed(body)) for _ in range(6)))
    assert sorted(status for status, _, _ in results) == [200] + [409] * 5, [(s, a) for s, a, _ in results]
    assert sum(len(msgs) for _, _, msgs in results) == 1


async def test_espocrms_retry_after_our_503_is_accepted_and_only_then_a_replay(stack: MotiaTester, redis: aioredis.Redis) -> None:
    """Redis refuses the marks of the first delivery (a key of the wrong type where the mark
    goes: the ledger script fails half-way) → 503, which EspoCRM retries (Sender/Queue: 503 is
    retried). The retry must pass: the replay record is written only with the marks."""
    doc = f"r5{uuid.uuid4().hex[:12]}"
    body = php_json_encode([{"id": doc, "name": "retry"}])
    mark_key = f"{LEDGER_PREFIX}:mark:document:{doc}"
    await redis.set(mark_key, "not a hash")
    try:
        status, answer, msgs = await _post(stack, body, _signed(body))
        assert status == 503 and msgs == [], (status, answer)
        assert await redis.exists(_replay_key(body)) == 0, "a 503 must leave no replay record"
    finally:
        await redis.delete(mark_key)
    status, answer, msgs = await _post(stack, body, _signed(body))
    assert status == 200 and answer["accepted"] == 1 and len(msgs) == 1, (status, answer)
    status, answer, msgs = await _post(stack, body, _signed(body))
    assert status == 409 and msgs == [], (status, answer)


# ---------------------------------------------------------------- signatures and a token together


@pytest.fixture(scope="module")
async def both_stack(redis_url: str, sims: Simulators) -> AsyncIterator[MotiaTester]:
    """The project's steps with ESPOCRM_WEBHOOK_SECRETS and ESPOCRM_WEBHOOK_TOKEN both set, on
    a Redis database of its own."""
    url = db_url(redis_url, BOTH_MODES_DB)
    await flush_redis(url)
    tester = MotiaTester(ROOT / "src" / "steps", queue_defaults={"backoff_ms": 200})
    tester.env = {**stack_env(url), **sims.env(), "ESPOCRM_WEBHOOK_TOKEN": TOKEN}
    await tester.start(wait_functions=1, timeout=60)
    yield tester
    await tester.stop()


async def test_with_signatures_configured_a_token_alone_does_not_authenticate(both_stack: MotiaTester) -> None:
    body = _body("tk")
    attempts = {
        "token in the URL, no signature": (f"{ENDPOINT}?token={TOKEN}", AS_NGINX_FORWARDS),
        "token as nginx hands it on, no signature": (ENDPOINT, {**AS_NGINX_FORWARDS, "X-Auth-Token": TOKEN}),
        "token and a forged signature": (f"{ENDPOINT}?token={TOKEN}", {**AS_NGINX_FORWARDS, "Signature": sign_body(WEBHOOK_ID, "forged", body)}),
        "a valid signature without the configured token": (ENDPOINT, _signed(body)),
        "a valid signature and a wrong token": (f"{ENDPOINT}?token=wrong-{TOKEN}", _signed(body)),
    }
    for name, (path, headers) in attempts.items():
        status, answer, msgs = await _post(both_stack, body, headers, path)
        assert status == 401, f"{name}: {status} {answer}"
        assert msgs == [], f"{name}: queued {msgs}"
        assert TOKEN not in str(answer)
    status, answer, msgs = await _post(both_stack, body, _signed(body), f"{ENDPOINT}?token={TOKEN}")
    assert status == 200 and len(msgs) == 1, (status, answer)
