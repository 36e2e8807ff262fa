"""EspoCRMAPI against the EspoCRM simulator, plus the pure helpers (where encoding, webhook signatures)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from services.clients.errors import ApiError, AuthError, ConflictError, NotFoundError
from services.clients.espocrm import EspoCRMAPI, Order, encode_where
from services.clients.espocrm_webhooks import (
    WebhookAction,
    WebhookEvent,
    legacy_signature,
    parse_webhook_secrets,
    php_json_encode,
    sign_body,
    verify_signature,
)
from services.clients.retry import RetryPolicy
from simulators.espocrm import EspoCRMState, create_app, load_seed_file, state_of
from simulators.runner import RunningApp, start_app

KEY = "client-key"
FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_total=10, jitter=False)
RK = "65f0c0de00b000001"
MAX = "65f0c0de00c000001"


class Sim:
    def __init__(self, running: RunningApp, state: EspoCRMState) -> None:
        self.running = running
        self.state = state
        self.url = running.url
        self.api = running.url + "/api/v1"

    async def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        async with aiohttp.ClientSession() as s:
            async with s.request(method, self.url + path, **kwargs) as r:
                assert r.status == 200, await r.text()
                return await r.json()

    async def count(self, path_re: str, method: str = "*") -> int:
        return len(await self.admin("GET", "/_sim/requests", params={"path": path_re, "method": method}))


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    app = create_app(KEY, seed=load_seed_file(), webhook_debounce=0.01)
    running = await start_app(app)
    yield Sim(running, state_of(app))
    await running.stop()


@pytest.fixture
async def client(sim: Sim) -> AsyncIterator[EspoCRMAPI]:
    api = EspoCRMAPI(sim.api, KEY, retry_policy=FAST, timeout=10)
    yield api
    await api.close()


# --- pure helpers -------------------------------------------------------------------------------


def test_encode_where_php_brackets() -> None:
    where = [
        {"type": "equals", "attribute": "status", "value": "New"},
        {"type": "or", "value": [
            {"type": "in", "attribute": "fileStatus", "value": ["new", "changed"]},
            {"type": "and", "value": [{"type": "isTrue", "attribute": "flag"}, {"type": "equals", "attribute": "b", "value": False}]},
        ]},
        {"type": "isNull", "attribute": "xaiId", "value": None},
        {"type": "greaterThan", "attribute": "n", "value": 3},
    ]
    assert encode_where(where) == [
        ("where[0][type]", "equals"), ("where[0][attribute]", "status"), ("where[0][value]", "New"),
        ("where[1][type]", "or"),
        ("where[1][value][0][type]", "in"), ("where[1][value][0][attribute]", "fileStatus"),
        ("where[1][value][0][value][0]", "new"), ("where[1][value][0][value][1]", "changed"),
        ("where[1][value][1][type]", "and"),
        ("where[1][value][1][value][0][type]", "isTrue"), ("where[1][value][1][value][0][attribute]", "flag"),
        ("where[1][value][1][value][1][type]", "equals"), ("where[1][value][1][value][1][attribute]", "b"),
        ("where[1][value][1][value][1][value]", "false"),
        ("where[2][type]", "isNull"), ("where[2][attribute]", "xaiId"),
        ("where[3][type]", "greaterThan"), ("where[3][attribute]", "n"), ("where[3][value]", "3"),
    ]
    assert encode_where([]) == []
    with pytest.raises(TypeError):
        encode_where(["equals"])  # type: ignore[list-item]


def test_php_json_encode_matches_php() -> None:
    # json_encode(["url" => "https://x/y", "name" => "Größe €", "n" => 1, "f" => 1.5, "e" => [], "b" => true, "z" => null])
    obj = {"url": "https://x/y", "name": "Größe €", "n": 1, "f": 1.5, "e": [], "b": True, "z": None, "emoji": "😀"}
    assert php_json_encode(obj) == (
        b'{"url":"https:\\/\\/x\\/y","name":"Gr\\u00f6\\u00dfe \\u20ac","n":1,"f":1.5,"e":[],"b":true,"z":null,'
        b'"emoji":"\\ud83d\\ude00"}'
    )
    with pytest.raises(ValueError):
        php_json_encode({"x": float("nan")})


def test_signatures_and_verification() -> None:
    body = php_json_encode([{"id": "abc", "name": "x/y"}])
    expected_hex = hmac.new(b"secret1", body, hashlib.sha256).hexdigest()
    sig = sign_body("wh1", "secret1", body)
    assert base64.b64decode(sig) == f"wh1:{expected_hex}".encode()
    legacy = legacy_signature("wh1", "secret1", body)
    assert base64.b64decode(legacy) == b"wh1:" + hmac.new(b"secret1", body, hashlib.sha256).digest()
    secrets = {"wh1": "secret1", "wh2": "secret2"}
    assert verify_signature({"signature": sig}, body, secrets) == "wh1"
    assert verify_signature({"x-signature": legacy}, body, secrets) == "wh1"
    assert verify_signature({"signature": "garbage!!", "x-signature": legacy}, body, secrets) == "wh1"
    assert verify_signature({"signature": sig}, body + b"x", secrets) is None
    assert verify_signature({"signature": sign_body("wh2", "secret1", body)}, body, secrets) is None
    assert verify_signature({"signature": sign_body("wh3", "secret1", body)}, body, secrets) is None
    assert verify_signature({}, body, secrets) is None


def test_parse_webhook_secrets() -> None:
    assert parse_webhook_secrets("id1:secret1, id2:sec:ret2,") == {"id1": "secret1", "id2": "sec:ret2"}
    assert parse_webhook_secrets("") == {}
    for bad, text in [("id1", "no ':'"), (":s", "empty webhook id"), ("id1:", "empty secret"), ("a:1,a:2", "twice")]:
        with pytest.raises(ValueError, match=text):
            parse_webhook_secrets(bad)


def test_webhook_event_parsing() -> None:
    assert WebhookEvent.parse("CDokumente.update") == WebhookEvent("CDokumente", WebhookAction.UPDATE)
    ev = WebhookEvent.parse("Account.fieldUpdate.status")
    assert ev.field == "status" and str(ev) == "Account.fieldUpdate.status"
    for bad in ("CDokumente", "CDokumente.explode", "Account.fieldUpdate", ".create"):
        with pytest.raises(ValueError):
            WebhookEvent.parse(bad)


# --- against the simulator ----------------------------------------------------------------------


async def test_crud(client: EspoCRMAPI) -> None:
    created = await client.create_entity("CDokumente", {"name": "Klage", "fileStatus": "new"})
    assert len(created["id"]) == 17
    got = await client.get_entity("CDokumente", created["id"])
    assert got["name"] == "Klage"
    updated = await client.update_entity("CDokumente", created["id"], {"xaiSyncStatus": "clean", "xaiCollections": ["c1"]})
    assert updated["xaiSyncStatus"] == "clean" and updated["name"] == "Klage"
    assert await client.delete_entity("CDokumente", created["id"]) is True
    with pytest.raises(NotFoundError) as err:
        await client.get_entity("CDokumente", created["id"])
    assert err.value.status == 404 and created["id"] in err.value.reason


async def test_duplicate_conflict(client: EspoCRMAPI) -> None:
    with pytest.raises(ConflictError) as err:
        await client.create_entity("CBeteiligte", {"name": "Max Mustermann"})
    assert err.value.reason == "duplicate" and MAX in err.value.body
    again = await client.create_entity("CBeteiligte", {"name": "Max Mustermann"}, skip_duplicate_check=True)
    assert again["id"] != MAX


async def test_list_with_where(client: EspoCRMAPI) -> None:
    page = await client.list_entities(
        "CDokumente",
        where=[{"type": "equals", "attribute": "fileStatus", "value": "new"},
               {"type": "linkedWith", "attribute": "raeumungsklagen", "value": [RK]}],
        select="id,name,fileStatus",
        order_by="name",
        order=Order.ASC,
        max_size=2,
    )
    assert page["total"] == 3 and len(page["list"]) == 2
    assert set(page["list"][0]) == {"id", "name", "fileStatus"}
    assert page["list"][0]["name"] <= page["list"][1]["name"]
    with pytest.raises(ValueError):
        await client.list_entities("CDokumente", max_size=500)


async def test_iter_entities_over_many_pages(sim: Sim, client: EspoCRMAPI) -> None:
    await sim.admin("POST", "/_sim/seed", json={"entities": {"Thing": [{"name": f"t{i}", "n": i} for i in range(450)]}})
    await sim.admin("DELETE", "/_sim/requests")
    seen = [r async for r in client.iter_entities("Thing", select=["n"], page_size=100)]
    assert len(seen) == 450 and len({r["id"] for r in seen}) == 450
    assert [r["id"] for r in seen] == sorted(r["id"] for r in seen)  # stable: ordered by id
    assert await sim.count(r"^/api/v1/Thing$", "GET") == 5
    odd = [r async for r in client.iter_entities("Thing", where=[{"type": "greaterThanOrEquals", "attribute": "n", "value": 400}], order_by="n", page_size=20)]
    assert [r["n"] for r in odd] == list(range(400, 450))


async def test_relationships(client: EspoCRMAPI) -> None:
    docs = await client.list_related("Raeumungsklage", RK, "dokumente", select="name", max_size=2)
    assert docs["total"] == 3 and len(docs["list"]) == 2
    all_docs = [d async for d in client.iter_related("Raeumungsklage", RK, "dokumente", page_size=2)]
    assert len(all_docs) == 3
    new_doc = await client.create_entity("CDokumente", {"name": "Nachtrag"})
    assert await client.link_entities("Raeumungsklage", RK, "dokumente", new_doc["id"]) is True
    linked = await client.list_related("CDokumente", new_doc["id"], "raeumungsklagen")
    assert [x["id"] for x in linked["list"]] == [RK]
    await client.link_entities("CDokumente", new_doc["id"], "beteiligte", [MAX, "65f0c0de00c000002"])
    assert (await client.list_related("CDokumente", new_doc["id"], "beteiligte"))["total"] == 2
    await client.unlink_entities("CDokumente", new_doc["id"], "beteiligte", [MAX])
    rest = await client.list_related("CDokumente", new_doc["id"], "beteiligte")
    assert [x["id"] for x in rest["list"]] == ["65f0c0de00c000002"]
    with pytest.raises(NotFoundError):
        await client.list_related("CDokumente", new_doc["id"], "nolink")


async def test_attachment_upload_and_streaming_download(client: EspoCRMAPI) -> None:
    content = bytes(range(256)) * 40  # 10 KiB
    att = await client.upload_attachment("scan.bin", content, "application/octet-stream", "CDokumente", "file")
    assert att["size"] == len(content) and att["name"] == "scan.bin"
    chunks = [c async for c in client.download_attachment_stream(att["id"], chunk_size=1024)]
    assert len(chunks) >= 2 and all(len(c) <= 1024 for c in chunks)
    assert b"".join(chunks) == content
    assert await client.download_attachment(att["id"]) == content
    doc = await client.create_entity("CDokumente", {"name": "Scan", "fileId": att["id"]})
    assert doc["md5sum"] == hashlib.md5(content).hexdigest()
    with pytest.raises(NotFoundError):
        async for _ in client.download_attachment_stream("missing"):
            pass


async def test_retries_503_then_succeeds(sim: Sim, client: EspoCRMAPI) -> None:
    await sim.admin("DELETE", "/_sim/requests")
    await sim.admin("POST", "/_sim/faults", json={"method": "GET", "path": f"^/api/v1/Raeumungsklage/{RK}$", "status": 503, "times": 2})
    rec = await client.get_entity("Raeumungsklage", RK)
    assert rec["id"] == RK
    assert await sim.count(f"^/api/v1/Raeumungsklage/{RK}$") == 3


async def test_400_is_not_retried(sim: Sim, client: EspoCRMAPI) -> None:
    await sim.admin("DELETE", "/_sim/requests")
    with pytest.raises(ApiError) as err:
        await client.list_entities("CDokumente", where=[{"type": "fuzzy", "attribute": "name", "value": "x"}])
    assert err.value.status == 400 and "fuzzy" in err.value.reason
    assert await sim.count(r"^/api/v1/CDokumente$") == 1


async def test_429_retry_after_is_honoured(sim: Sim, client: EspoCRMAPI) -> None:
    await sim.admin("DELETE", "/_sim/requests")
    await sim.admin("POST", "/_sim/faults", json={"method": "GET", "path": f"^/api/v1/Raeumungsklage/{RK}$", "status": 429, "times": 1, "retry_after": 1})
    started = time.monotonic()
    rec = await client.get_entity("Raeumungsklage", RK)
    assert rec["id"] == RK
    assert time.monotonic() - started >= 0.95
    assert await sim.count(f"^/api/v1/Raeumungsklage/{RK}$") == 2


async def test_auth_error(sim: Sim) -> None:
    async with EspoCRMAPI(sim.api, "wrong", retry_policy=FAST) as api:
        with pytest.raises(AuthError) as err:
            await api.get_entity("Raeumungsklage", RK)
    assert err.value.status == 401 and err.value.reason


async def test_hmac_mode() -> None:
    app = create_app("hkey", hmac_secret="hsecret", seed=load_seed_file())
    running = await start_app(app)
    try:
        api = EspoCRMAPI(running.url + "/api/v1", "hkey", api_secret="hsecret", retry_policy=FAST)
        vector = EspoCRMAPI("http://x/api/v1", "myapikey", api_secret="mysecret").hmac_header("GET", "/Contact/55643ca033f7ab4c5")
        assert vector == "bXlhcGlrZXk6ZTg2MjdiMDY2NDU0Yjk3MGQ4YjNhM2I0MTMxYjU2ZmUxMzUzZDRiYjgzMWYyYmI2ZWNhNDAxMzdhNzlhN2FhZA=="
        assert (await api.get_entity("Raeumungsklage", RK))["id"] == RK
        doc = await api.create_entity("CDokumente", {"name": "hmac"})
        await api.link_entities("CDokumente", doc["id"], "raeumungsklagen", RK)
        att = await api.upload_attachment("a.txt", b"abc", "text/plain", "CDokumente", "file")
        assert b"".join([c async for c in api.download_attachment_stream(att["id"])]) == b"abc"
        await api.close()
        async with EspoCRMAPI(running.url + "/api/v1", "hkey", api_secret="wrong", retry_policy=FAST) as bad:
            with pytest.raises(AuthError):
                await bad.get_entity("Raeumungsklage", RK)
    finally:
        await running.stop()


async def test_register_webhook(sim: Sim, client: EspoCRMAPI) -> None:
    hook = await client.register_webhook("CDokumente.update", "http://127.0.0.1:9/hook")
    assert hook["event"] == "CDokumente.update" and len(hook["secretKey"]) == 32
    assert hook["id"] in sim.state.dispatcher.webhooks
    with pytest.raises(ApiError) as err:
        await client.register_webhook("CDokumente.nothing", "http://127.0.0.1:9/hook")
    assert err.value.status == 400
    assert await client.delete_webhook(hook["id"]) is True
    assert hook["id"] not in sim.state.dispatcher.webhooks
