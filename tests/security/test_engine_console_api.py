"""Attacks on the stand-in engine's `/_console/*` API on the REST port (issue 14): cross-site
writes, DNS rebinding, clients on the network, secrets in answers, nesting bombs."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from iii_local.console_server import MASK
from iii_local.testing import PROJECT_ROOT, MotiaTester
from tests.iii_local.attack_support import lan_address

STEPS = PROJECT_ROOT / "tests" / "iii_local" / "conformance" / "process_steps"
TOKEN = "console-token-" + "t" * 40
WRITE = {"Content-Type": "application/json", "X-Console-Request": "1"}


class ExposedTester(MotiaTester):
    """The REST module on 0.0.0.0 (reachable from the network), as a developer might configure it."""

    def write_config(self) -> Path:
        path = super().write_config()
        doc = yaml.safe_load(path.read_text())
        doc["modules"][0]["config"]["host"] = "0.0.0.0"
        path.write_text(yaml.safe_dump(doc))
        return path


@pytest.fixture(scope="module")
async def tester() -> AsyncIterator[MotiaTester]:
    t = MotiaTester(STEPS)
    await t.start()
    try:
        yield t
    finally:
        await t.stop()


async def _send(t: MotiaTester, method: str, path: str, *, data: Any = None, headers: dict[str, str] | None = None,
                base: str | None = None, local_addr: str | None = None) -> tuple[int, dict[str, str], str]:
    connector = aiohttp.TCPConnector(local_addr=(local_addr, 0)) if local_addr else None
    async with aiohttp.ClientSession(connector=connector) as s:
        async with s.request(method, (base or t.base_url) + path, data=data, headers=headers or {}) as r:
            return r.status, dict(r.headers), await r.text()


async def _enqueued(t: MotiaTester, topic: str) -> list[Any]:
    return [m["data"] for m in (await t.console("GET", f"/_console/messages?topic={topic}"))["messages"]]


async def test_cross_site_writes_are_refused(tester: MotiaTester) -> None:
    """A foreign page's `text/plain` POST (no preflight) enqueued a job before."""
    topic = f"attack.{uuid.uuid4().hex[:8]}"
    body = f'{{"topic": "{topic}", "data": {{"n": 1}}}}'
    evil = {"Origin": "https://evil.example"}
    status, _, _ = await _send(tester, "POST", "/_console/enqueue", data=body, headers={**evil, "Content-Type": "text/plain"})
    assert status in (403, 415)
    status, _, _ = await _send(tester, "POST", "/_console/enqueue", data=body, headers={"Content-Type": "text/plain", "X-Console-Request": "1"})
    assert status == 415
    status, _, _ = await _send(tester, "POST", "/_console/enqueue", data=body, headers={"Content-Type": "application/json"})
    assert status == 403  # no custom header: what a form or a simple fetch sends
    status, _, _ = await _send(tester, "POST", "/_console/enqueue", data=body, headers={**evil, **WRITE})
    assert status == 403
    status, headers, _ = await _send(tester, "OPTIONS", "/_console/enqueue", headers={
        **evil, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-console-request"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    assert await _enqueued(tester, topic) == []

    status, _, text = await _send(tester, "POST", "/_console/enqueue", data=body, headers=WRITE)
    assert status == 200, text
    assert await _enqueued(tester, topic) == [{"n": 1}]


async def test_a_rebound_host_name_reads_nothing(tester: MotiaTester) -> None:
    """DNS rebinding: a page on rebind.evil.example whose name now points at 127.0.0.1."""
    await tester.state_set("attack.rebind", "note", "RE8IND-VALUE")
    status, _, text = await _send(tester, "GET", "/_console/state/attack.rebind", headers={"Host": "rebind.evil.example"})
    assert status == 421 and "RE8IND-VALUE" not in text
    status, _, text = await _send(tester, "GET", "/_console/state/attack.rebind", headers={"Host": f"localhost:{tester.rest_port}"})
    assert status == 200 and "RE8IND-VALUE" in text


async def test_secrets_are_masked_in_answers(tester: MotiaTester) -> None:
    await tester.state_set("attack.mask", "api_token", "T0P-SECRET-1")
    await tester.state_set("attack.mask", "profile", {"password": "T0P-SECRET-2", "name": "visible"})
    topic = f"attack.{uuid.uuid4().hex[:8]}"
    await tester.enqueue(topic, {"refresh_token": "T0P-SECRET-3", "id": 7})
    answers = [await _send(tester, "GET", path) for path in (
        "/_console/state/attack.mask", "/_console/state/attack.mask/api_token", "/_console/state/attack.mask/profile",
        f"/_console/messages?topic={topic}")]
    assert all(status == 200 for status, _, _ in answers), answers
    text = json.dumps([json.loads(body) for _, _, body in answers], ensure_ascii=False)
    assert "T0P-SECRET" not in text
    assert text.count(MASK) == 5 and "visible" in text  # token and password: in the scope, their keys, the message
    assert await tester.state_get("attack.mask", "api_token") == "T0P-SECRET-1"  # an operator tool may ask for it


async def test_a_nesting_bomb_is_a_400(tester: MotiaTester) -> None:
    """100,000 nested `[` made the JSON reader raise RecursionError: a 500."""
    for body in (b"[" * 100_000, b"[" * 200 + b"]" * 200, b"{" * 50_000):
        for method, path in (("POST", "/_console/enqueue"), ("PUT", "/_console/state/attack.deep/k"), ("POST", "/_console/cron/trigger")):
            status, _, text = await _send(tester, method, path, data=body, headers=WRITE)
            assert status == 400, (method, path, body[:5], status, text)
    assert (await _send(tester, "GET", "/_console/status"))[0] == 200


async def test_clients_on_the_network_need_the_console_token() -> None:
    lan = lan_address()
    if lan is None:
        pytest.skip("this host has no non-loopback address")
    open_api = ExposedTester(STEPS)
    await open_api.start()
    try:
        base = f"http://{lan}:{open_api.rest_port}"
        status, _, text = await _send(open_api, "GET", "/_console/status", base=base, local_addr=lan)
        assert status == 403 and "loopback" in text
        status, _, _ = await _send(open_api, "GET", "/_console/status", headers={"X-Forwarded-For": "203.0.113.9"})
        assert status == 403  # through a proxy on this host: not a loopback client either
        assert (await _send(open_api, "GET", "/p/who", base=base, local_addr=lan))[0] == 200  # the routes stay the engine's
    finally:
        await open_api.stop()

    guarded = ExposedTester(STEPS, local_engine={"console_token": TOKEN})
    await guarded.start()
    try:
        base = f"http://{lan}:{guarded.rest_port}"
        status, _, _ = await _send(guarded, "GET", "/_console/status", base=base, local_addr=lan)
        assert status == 401
        status, _, _ = await _send(guarded, "GET", "/_console/status", base=base, local_addr=lan, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        for _ in range(5):
            status, _, _ = await _send(guarded, "GET", "/_console/status", base=base, local_addr=lan, headers={"Authorization": "Bearer guess"})
            assert status == 401
        status, headers, _ = await _send(guarded, "GET", "/_console/status", base=base, local_addr=lan, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 429 and int(headers["Retry-After"]) > 0  # throttled: even the right token waits
    finally:
        await guarded.stop()
