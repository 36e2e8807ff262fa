"""The EspoCRM simulator behaves like EspoCRM: auth, records, where, links, attachments, webhooks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from services.clients.espocrm_webhooks import php_json_encode, verify_signature
from simulators.espocrm import (
    DEMO_SEED_PATH,
    SEED_DIR,
    EspoCRMState,
    create_app,
    load_seed_file,
    parse_php_query,
    php_listify,
    state_of,
)
from simulators.runner import RunningApp, start_app
from tests.simulators.http_status import status

KEY = "test-key"
HMAC_VECTOR = "bXlhcGlrZXk6ZTg2MjdiMDY2NDU0Yjk3MGQ4YjNhM2I0MTMxYjU2ZmUxMzUzZDRiYjgzMWYyYmI2ZWNhNDAxMzdhNzlhN2FhZA=="

# demo seed ids
ACC = "65f0c0de00a000001"
RK = "65f0c0de00b000001"
MAX, ERIKA, SCHMIDT = "65f0c0de00c000001", "65f0c0de00c000002", "65f0c0de00c000003"
DOC_KUENDIGUNG = "65f0c0de00d000004"

Maker = Callable[..., Awaitable[tuple[str, EspoCRMState]]]


@pytest.fixture
async def make_sim() -> AsyncIterator[Maker]:
    running: list[RunningApp] = []

    async def make(api_key: str = KEY, **kwargs: Any) -> tuple[str, EspoCRMState]:
        app = create_app(api_key, **kwargs)
        r = await start_app(app)
        running.append(r)
        return r.url, state_of(app)

    yield make
    for r in running:
        await r.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"X-Api-Key": KEY}) as session:
        yield session


@pytest.fixture
async def demo(make_sim: Maker) -> tuple[str, EspoCRMState]:
    return await make_sim(seed=load_seed_file(), webhook_debounce=0.02, webhook_retry_interval=0.1)


class Receiver:
    """A webhook endpoint answering a scripted list of statuses (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.running: RunningApp | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(({k.lower(): v for k, v in request.headers.items()}, body))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.running = await start_app(app)
        return self.running.url + "/hook"

    def items(self) -> list[dict[str, Any]]:
        return [item for _, body in self.requests for item in json.loads(body)]


@pytest.fixture
async def receiver_factory() -> AsyncIterator[Callable[..., Awaitable[tuple[Receiver, str]]]]:
    made: list[Receiver] = []

    async def make(statuses: list[int] | None = None) -> tuple[Receiver, str]:
        rec = Receiver(statuses)
        url = await rec.start()
        made.append(rec)
        return rec, url

    yield make
    for rec in made:
        assert rec.running is not None
        await rec.running.stop()


async def eventually(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def where_qs(items: list[dict[str, Any]], prefix: str = "where") -> str:
    """Percent-encoded PHP bracket query, written independently of the client's encoder."""
    pairs: list[tuple[str, str]] = []

    def walk(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{key}[{k}]", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{key}[{i}]", v)
        else:
            pairs.append((key, "true" if value is True else "false" if value is False else str(value)))

    for i, item in enumerate(items):
        walk(f"{prefix}[{i}]", item)
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


# --- auth ------------------------------------------------------------------------------------


async def test_hmac_test_vector_is_accepted(make_sim: Maker) -> None:
    seed = {"entities": {"Contact": [{"id": "55643ca033f7ab4c5", "name": "Vector"}]}}
    url, _ = await make_sim(api_key="myapikey", hmac_secret="mysecret", seed=seed)
    target = f"{url}/api/v1/Contact/55643ca033f7ab4c5"
    async with aiohttp.ClientSession() as s:
        async with s.get(target, headers={"X-Hmac-Authorization": HMAC_VECTOR}) as r:
            assert r.status == 200
            assert (await r.json())["name"] == "Vector"
        # the same signature does not authorise another path or method
        async with s.get(f"{url}/api/v1/Contact/55643ca033f7ab4c6", headers={"X-Hmac-Authorization": HMAC_VECTOR}) as r:
            assert r.status == 401
            assert r.headers["X-Status-Reason"]
        assert await status(s.delete(target, headers={"X-Hmac-Authorization": HMAC_VECTOR})) == 401
        # an HMAC API user cannot use the plain key
        assert await status(s.get(target, headers={"X-Api-Key": "myapikey"})) == 401


async def test_api_key_and_basic_auth(make_sim: Maker) -> None:
    url, _ = await make_sim(basic=("admin", "pw"))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/api/v1/Account") as r:
            assert r.status == 401
            assert r.headers["X-Status-Reason"] == "No credentials."
        async with s.get(f"{url}/api/v1/Account", headers={"X-Api-Key": "nope"}) as r:
            assert r.status == 401
            assert "Wrong" in r.headers["X-Status-Reason"]
        async with s.get(f"{url}/api/v1/Account", headers={"X-Api-Key": KEY}) as r:
            assert r.status == 200
            assert await r.json() == {"total": 0, "list": []}
        assert await status(s.get(f"{url}/api/v1/Account", auth=aiohttp.BasicAuth("admin", "pw"))) == 200
        assert await status(s.get(f"{url}/api/v1/Account", auth=aiohttp.BasicAuth("admin", "bad"))) == 401
        # the admin API needs no auth
        assert await status(s.get(f"{url}/_sim/requests")) == 200


# --- records ---------------------------------------------------------------------------------


async def test_crud_round_trip(make_sim: Maker, http: aiohttp.ClientSession) -> None:
    url, _ = await make_sim()
    base = f"{url}/api/v1"
    async with http.post(f"{base}/Raeumungsklage", json={"name": "RK 1", "status": "Offen", "id": "forced"}) as r:
        assert r.status == 200  # EspoCRM answers 200, not 201
        rec = await r.json()
    assert re.fullmatch(r"[0-9a-f]{17}", rec["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rec["createdAt"])
    assert rec["modifiedAt"] == rec["createdAt"] and rec["status"] == "Offen"
    rid = rec["id"]
    async with http.put(f"{base}/Raeumungsklage/{rid}", json={"status": "Abgeschlossen"}) as r:
        assert r.status == 200
        updated = await r.json()
    assert updated["status"] == "Abgeschlossen" and updated["name"] == "RK 1"
    async with http.patch(f"{base}/Raeumungsklage/{rid}", json={"xaiCollectionId": "collection_1"}) as r:
        assert (await r.json())["xaiCollectionId"] == "collection_1"
    async with http.get(f"{base}/Raeumungsklage/{rid}") as r:
        got = await r.json()
    assert got["status"] == "Abgeschlossen" and got["xaiCollectionId"] == "collection_1"
    async with http.delete(f"{base}/Raeumungsklage/{rid}") as r:
        assert r.status == 200 and await r.json() is True
    async with http.get(f"{base}/Raeumungsklage/{rid}") as r:
        assert r.status == 404
        assert rid in r.headers["X-Status-Reason"]
    assert await status(http.put(f"{base}/Raeumungsklage/{rid}", json={"name": "x"})) == 404
    assert await status(http.delete(f"{base}/Raeumungsklage/{rid}")) == 404


async def test_duplicate_check_and_skip(make_sim: Maker, http: aiohttp.ClientSession) -> None:
    url, _ = await make_sim()
    base = f"{url}/api/v1"
    async with http.post(f"{base}/CBeteiligte", json={"name": "Max Mustermann"}) as r:
        first = await r.json()
    async with http.post(f"{base}/CBeteiligte", json={"name": " max mustermann "}) as r:
        assert r.status == 409
        assert r.headers["X-Status-Reason"] == "duplicate"
        assert [d["id"] for d in await r.json()] == [first["id"]]
    assert await status(http.post(f"{base}/CBeteiligte", json={"name": "Max Mustermann"}, headers={"X-Skip-Duplicate-Check": "true"})) == 200
    # other entity types have no duplicate check
    for _ in range(2):
        assert await status(http.post(f"{base}/CDokumente", json={"name": "same"})) == 200


async def test_enum_validation(make_sim: Maker, http: aiohttp.ClientSession) -> None:
    url, _ = await make_sim()
    async with http.post(f"{url}/api/v1/CDokumente", json={"name": "d", "xaiSyncStatus": "claen"}) as r:
        assert r.status == 400
        assert "xaiSyncStatus" in r.headers["X-Status-Reason"]
        assert (await r.json())["messageTranslation"]["label"] == "validationFailure"


async def test_paging_order_select_and_max_size(make_sim: Maker, http: aiohttp.ClientSession) -> None:
    records = [{"id": f"r{i:03d}", "name": f"Doc {i:03d}", "n": i} for i in range(45)]
    url, _ = await make_sim(seed={"entities": {"CDokumente": records}})
    base = f"{url}/api/v1/CDokumente"
    async with http.get(base, params={"maxSize": "201"}) as r:
        assert r.status == 403
        assert r.headers["X-Status-Reason"] == "Max size should not exceed 200. Use offset and limit."
    assert await status(http.get(base, params={"maxSize": "abc"})) == 400
    async with http.get(base) as r:
        assert len((await r.json())["list"]) == 45  # default maxSize is the limit, as in EspoCRM
    async with http.get(base, params={"maxSize": "10", "offset": "40", "orderBy": "n", "order": "asc", "select": "name"}) as r:
        page = await r.json()
    assert page["total"] == 45
    assert page["list"] == [{"id": f"r{i:03d}", "name": f"Doc {i:03d}"} for i in range(40, 45)]
    async with http.get(base, params={"maxSize": "3", "orderBy": "n", "order": "desc"}) as r:
        assert [x["n"] for x in (await r.json())["list"]] == [44, 43, 42]
    async with http.get(base, params={"maxSize": "3", "offset": "0"}, headers={"X-No-Total": "true"}) as r:
        assert (await r.json())["total"] == -1
    async with http.get(base, params={"maxSize": "10", "offset": "40"}, headers={"X-No-Total": "true"}) as r:
        assert (await r.json())["total"] == -2


WHERE_RECORDS = [
    {"id": "a1", "name": "Alpha Mietvertrag", "status": "New", "n": 1, "flag": True, "tags": ["x", "y"], "note": None},
    {"id": "a2", "name": "Beta Kündigung", "status": "Done", "n": 5, "flag": False, "tags": [], "note": "n"},
    {"id": "a3", "name": "Gamma Mietkonto", "status": "New", "n": 10, "flag": True, "tags": ["z"], "note": "m"},
    {"id": "a4", "name": "alpha rest", "status": "Open", "n": 7, "flag": False, "tags": None, "note": None},
]

WHERE_CASES: list[tuple[list[dict[str, Any]], set[str]]] = [
    ([{"type": "equals", "attribute": "status", "value": "New"}], {"a1", "a3"}),
    ([{"type": "equals", "attribute": "status", "value": "new"}], {"a1", "a3"}),  # _ci collation
    ([{"type": "notEquals", "attribute": "status", "value": "New"}], {"a2", "a4"}),
    ([{"type": "in", "attribute": "status", "value": ["Done", "Open"]}], {"a2", "a4"}),
    ([{"type": "notIn", "attribute": "status", "value": ["Done", "Open"]}], {"a1", "a3"}),
    ([{"type": "isNull", "attribute": "note"}], {"a1", "a4"}),
    ([{"type": "isNotNull", "attribute": "note"}], {"a2", "a3"}),
    ([{"type": "greaterThan", "attribute": "n", "value": "5"}], {"a3", "a4"}),
    ([{"type": "lessThan", "attribute": "n", "value": 5}], {"a1"}),
    ([{"type": "greaterThanOrEquals", "attribute": "n", "value": "5"}], {"a2", "a3", "a4"}),
    ([{"type": "lessThanOrEquals", "attribute": "n", "value": "5"}], {"a1", "a2"}),
    ([{"type": "between", "attribute": "n", "value": ["2", "7"]}], {"a2", "a4"}),
    ([{"type": "isTrue", "attribute": "flag"}], {"a1", "a3"}),
    ([{"type": "isFalse", "attribute": "flag"}], {"a2", "a4"}),
    ([{"type": "contains", "attribute": "name", "value": "miet"}], {"a1", "a3"}),
    ([{"type": "startsWith", "attribute": "name", "value": "alpha"}], {"a1", "a4"}),
    ([{"type": "endsWith", "attribute": "name", "value": "konto"}], {"a3"}),
    ([{"type": "like", "attribute": "name", "value": "%ü%"}], {"a2"}),
    ([{"type": "arrayAnyOf", "attribute": "tags", "value": ["y", "z"]}], {"a1", "a3"}),
    ([{"type": "arrayAllOf", "attribute": "tags", "value": ["x", "y"]}], {"a1"}),
    ([{"type": "arrayNoneOf", "attribute": "tags", "value": ["x"]}], {"a2", "a3", "a4"}),
    ([{"type": "arrayIsEmpty", "attribute": "tags"}], {"a2", "a4"}),
    ([{"type": "arrayIsNotEmpty", "attribute": "tags"}], {"a1", "a3"}),
    (
        [
            {"type": "or", "value": [
                {"type": "and", "value": [
                    {"type": "equals", "attribute": "status", "value": "New"},
                    {"type": "greaterThan", "attribute": "n", "value": "3"},
                ]},
                {"type": "equals", "attribute": "status", "value": "Done"},
            ]},
            {"type": "isNotNull", "attribute": "note"},
        ],
        {"a2", "a3"},
    ),
]


@pytest.mark.parametrize("where,expected", WHERE_CASES, ids=[c[0][0]["type"] + str(i) for i, c in enumerate(WHERE_CASES)])
async def test_where_bracket_query(make_sim: Maker, http: aiohttp.ClientSession, where: list[dict[str, Any]], expected: set[str]) -> None:
    url, _ = await make_sim(seed={"entities": {"Thing": WHERE_RECORDS}})
    async with http.get(f"{url}/api/v1/Thing?maxSize=50&{where_qs(where)}") as r:
        assert r.status == 200, r.headers.get("X-Status-Reason")
        page = await r.json()
    assert {x["id"] for x in page["list"]} == expected
    assert page["total"] == len(expected)
    # the same where as one searchParams JSON parameter
    async with http.get(f"{url}/api/v1/Thing", params={"searchParams": json.dumps({"where": where, "maxSize": 50})}) as r:
        assert {x["id"] for x in (await r.json())["list"]} == expected


async def test_where_errors(make_sim: Maker, http: aiohttp.ClientSession) -> None:
    url, _ = await make_sim(seed={"entities": {"Thing": WHERE_RECORDS}})
    async with http.get(f"{url}/api/v1/Thing?{where_qs([{'type': 'fuzzy', 'attribute': 'name', 'value': 'x'}])}") as r:
        assert r.status == 400
        assert "fuzzy" in r.headers["X-Status-Reason"]
    assert await status(http.get(f"{url}/api/v1/Thing", params={"searchParams": "{not json"})) == 400


async def test_where_linked_with_on_demo_seed(demo: tuple[str, EspoCRMState], http: aiohttp.ClientSession) -> None:
    url, _ = demo
    q = where_qs([{"type": "linkedWith", "attribute": "raeumungsklagen", "value": [RK]}])
    async with http.get(f"{url}/api/v1/CDokumente?{q}") as r:
        page = await r.json()
    assert page["total"] == 3
    q = where_qs([{"type": "or", "value": [
        {"type": "linkedWith", "attribute": "accounts", "value": ACC},
        {"type": "linkedWith", "attribute": "beteiligte", "value": [MAX]},
    ]}])
    async with http.get(f"{url}/api/v1/CDokumente?{q}") as r:
        assert (await r.json())["total"] == 4
    q = where_qs([{"type": "isNotLinked", "attribute": "raeumungsklagen"}])
    async with http.get(f"{url}/api/v1/CDokumente?{q}") as r:
        assert (await r.json())["total"] == 2


def test_php_query_parsing() -> None:
    parsed = parse_php_query([
        ("where[0][type]", "in"), ("where[0][attribute]", "s"), ("where[0][value][]", "a"), ("where[0][value][]", "b"),
        ("where[1][type]", "or"), ("where[1][value][0][type]", "isNull"), ("where[1][value][0][attribute]", "x"),
        ("maxSize", "5"),
    ])
    assert parsed["maxSize"] == "5"
    assert php_listify(parsed["where"]) == [
        {"type": "in", "attribute": "s", "value": ["a", "b"]},
        {"type": "or", "value": [{"type": "isNull", "attribute": "x"}]},
    ]


# --- relationships -----------------------------------------------------------------------------


async def test_relationships_are_symmetric(demo: tuple[str, EspoCRMState], http: aiohttp.ClientSession) -> None:
    url, _ = demo
    base = f"{url}/api/v1"
    async with http.get(f"{base}/Raeumungsklage/{RK}/dokumente", params={"orderBy": "name", "select": "name"}) as r:
        page = await r.json()
    assert page["total"] == 3
    assert [d["name"] for d in page["list"]] == sorted(d["name"] for d in page["list"])
    async with http.get(f"{base}/CDokumente/{DOC_KUENDIGUNG}/raeumungsklagen") as r:
        assert [x["id"] for x in (await r.json())["list"]] == [RK]
    # link from the other side, then see it from both
    async with http.post(f"{base}/CBeteiligte/{ERIKA}/dokumente", json={"ids": [DOC_KUENDIGUNG]}) as r:
        assert r.status == 200 and await r.json() is True
    async with http.get(f"{base}/CDokumente/{DOC_KUENDIGUNG}/beteiligte") as r:
        assert {x["id"] for x in (await r.json())["list"]} == {MAX, ERIKA}
    q = where_qs([{"type": "equals", "attribute": "firstName", "value": "Erika"}])
    async with http.get(f"{base}/CDokumente/{DOC_KUENDIGUNG}/beteiligte?{q}") as r:
        assert [x["id"] for x in (await r.json())["list"]] == [ERIKA]
    async with http.delete(f"{base}/CDokumente/{DOC_KUENDIGUNG}/beteiligte", json={"id": ERIKA}) as r:
        assert await r.json() is True
    async with http.get(f"{base}/CBeteiligte/{ERIKA}/dokumente") as r:
        assert (await r.json())["total"] == 0
    # errors
    async with http.get(f"{base}/CDokumente/{DOC_KUENDIGUNG}/nolink") as r:
        assert r.status == 404 and "nolink" in r.headers["X-Status-Reason"]
    assert await status(http.post(f"{base}/CDokumente/{DOC_KUENDIGUNG}/beteiligte", json={"id": "missing"})) == 404
    assert await status(http.post(f"{base}/CDokumente/{DOC_KUENDIGUNG}/beteiligte", json={})) == 400


async def test_bank_account_belongs_to_one_party(demo: tuple[str, EspoCRMState], http: aiohttp.ClientSession) -> None:
    url, _ = demo
    base = f"{url}/api/v1"
    async with http.get(f"{base}/CBeteiligte/{MAX}/bankverbindungen") as r:
        accounts = (await r.json())["list"]
    assert len(accounts) == 2
    moved = accounts[0]["id"]
    assert await status(http.post(f"{base}/CBeteiligte/{ERIKA}/bankverbindungen", json={"id": moved})) == 200
    async with http.get(f"{base}/CBankverbindungen/{moved}") as r:
        rec = await r.json()
    assert rec["beteiligteId"] == ERIKA and rec["beteiligteName"] == "Erika Mustermann"
    async with http.get(f"{base}/CBeteiligte/{MAX}/bankverbindungen") as r:
        assert (await r.json())["total"] == 1
    async with http.get(f"{base}/CBankverbindungen/{moved}/beteiligte") as r:
        assert [x["id"] for x in (await r.json())["list"]] == [ERIKA]
    # setting the foreign key by update moves it too
    async with http.put(f"{base}/CBankverbindungen/{moved}", json={"beteiligteId": SCHMIDT}) as r:
        assert (await r.json())["beteiligteName"] == "Immobilien Schmidt GmbH"
    async with http.get(f"{base}/CBeteiligte/{SCHMIDT}/bankverbindungen") as r:
        assert (await r.json())["total"] == 3


# --- attachments ---------------------------------------------------------------------------------


async def test_attachment_round_trip_and_document_hook(make_sim: Maker, http: aiohttp.ClientSession) -> None:
    url, _ = await make_sim()
    base = f"{url}/api/v1"
    content = "Schriftsatz – Räumung\n".encode() * 100
    body = {
        "name": "schriftsatz.txt", "type": "text/plain", "role": "Attachment", "relatedType": "CDokumente",
        "field": "file", "file": "data:text/plain;base64," + base64.b64encode(content).decode(),
    }
    async with http.post(f"{base}/Attachment", json=body) as r:
        assert r.status == 200
        att = await r.json()
    assert att["name"] == "schriftsatz.txt" and att["size"] == len(content) and att["type"] == "text/plain"
    async with http.get(f"{base}/Attachment/file/{att['id']}") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        assert await r.read() == content
    assert await status(http.get(f"{base}/Attachment/file/nope")) == 404
    assert await status(http.post(f"{base}/Attachment", json={**body, "file": "not-a-data-uri"})) == 400
    async with http.post(f"{base}/CDokumente", json={"name": "Schriftsatz", "fileId": att["id"]}) as r:
        doc = await r.json()
    assert doc["fileName"] == "schriftsatz.txt"
    assert doc["md5sum"] == hashlib.md5(content).hexdigest()
    assert doc["sha256"] == hashlib.sha256(content).hexdigest()
    assert doc["fileStatus"] == "new"
    # a synced document that gets a new file becomes 'changed'
    assert await status(http.put(f"{base}/CDokumente/{doc['id']}", json={"fileStatus": "synced"})) == 200
    async with http.post(f"{base}/Attachment", json={**body, "file": "data:text/plain;base64," + base64.b64encode(b"v2").decode()}) as r:
        att2 = await r.json()
    async with http.put(f"{base}/CDokumente/{doc['id']}", json={"fileId": att2["id"]}) as r:
        doc2 = await r.json()
    assert doc2["fileStatus"] == "changed" and doc2["md5sum"] == hashlib.md5(b"v2").hexdigest()


# --- demo seed -------------------------------------------------------------------------------------


def _iban_ok(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _pdf_ok(data: bytes) -> bool:
    assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
    xref_at = int(re.search(rb"startxref\s+(\d+)", data).group(1))  # type: ignore[union-attr]
    assert data[xref_at:].startswith(b"xref")
    offsets = [int(m) for m in re.findall(rb"(\d{10}) 00000 n", data)]
    for number, offset in enumerate(offsets, 1):
        assert data[offset:].startswith(f"{number} 0 obj".encode())
    return True


async def test_demo_seed_is_consistent(demo: tuple[str, EspoCRMState], http: aiohttp.ClientSession) -> None:
    url, state = demo
    seed = load_seed_file(DEMO_SEED_PATH)
    files = {a["id"]: (SEED_DIR / a["path"]).read_bytes() for a in seed["attachments"]}
    docs = seed["entities"]["CDokumente"]
    assert len(docs) >= 4
    for doc in docs:
        data = files[doc["fileId"]]
        assert doc["md5sum"] == hashlib.md5(data).hexdigest()
        assert doc["sha256"] == hashlib.sha256(data).hexdigest()
        assert doc["fileStatus"] == "new" and doc["xaiSyncStatus"] == "pending_sync"
        assert doc["xaiCollections"] == [] and doc["xaiId"] is None
        if doc["fileName"].endswith(".pdf"):
            assert _pdf_ok(data)
        async with http.get(f"{url}/api/v1/Attachment/file/{doc['fileId']}") as r:
            assert await r.read() == data
    banks = seed["entities"]["CBankverbindungen"]
    assert all(_iban_ok(b["iban"]) and b["iban"].startswith("DE") and len(b["iban"]) == 22 for b in banks)
    parties = seed["entities"]["CBeteiligte"]
    assert len(parties) == 3 and all(p["advowareId"] is None for p in parties)
    for p in parties:
        assert 1 <= sum(1 for b in banks if b["beteiligteId"] == p["id"]) <= 2
    async with http.get(f"{url}/api/v1/Account/{ACC}/dokumente") as r:
        assert 2 <= (await r.json())["total"] <= 3
    async with http.get(f"{url}/api/v1/Raeumungsklage/{RK}/dokumente") as r:
        assert (await r.json())["total"] == 3
    # reset with re-seed restores the demo data
    assert await status(http.delete(f"{url}/api/v1/Account/{ACC}")) == 200
    assert await status(http.post(f"{url}/_sim/reset", json={"seed": True})) == 200
    assert await status(http.get(f"{url}/api/v1/Account/{ACC}")) == 200
    assert await status(http.post(f"{url}/_sim/reset")) == 200
    assert await status(http.get(f"{url}/api/v1/Account/{ACC}")) == 404


async def test_seed_via_admin_api(make_sim: Maker, http: aiohttp.ClientSession) -> None:
    url, _ = await make_sim()
    doc = {
        "attachments": [{"id": "att1", "name": "a.txt", "type": "text/plain", "contentBase64": base64.b64encode(b"hi").decode()}],
        "entities": {"CDokumente": [{"id": "d1", "name": "D", "fileId": "att1"}], "Account": [{"id": "acc1", "name": "A"}]},
        "links": [{"entityType": "Account", "id": "acc1", "link": "dokumente", "foreignId": "d1"}],
    }
    assert await status(http.post(f"{url}/_sim/seed", json=doc)) == 200
    async with http.get(f"{url}/api/v1/CDokumente/d1/accounts") as r:
        assert [x["id"] for x in (await r.json())["list"]] == ["acc1"]
    assert await status(http.post(f"{url}/_sim/seed", json={"links": [{"entityType": "Account", "id": "acc1", "link": "dokumente", "foreignId": "zz"}]})) == 400


# --- outgoing webhooks ---------------------------------------------------------------------------------


async def _register(http: aiohttp.ClientSession, url: str, event: str, hook_url: str) -> dict[str, Any]:
    async with http.post(f"{url}/api/v1/Webhook", json={"event": event, "url": hook_url}) as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


async def test_webhooks_are_batched_and_signed(make_sim: Maker, http: aiohttp.ClientSession, receiver_factory: Any) -> None:
    url, state = await make_sim(webhook_debounce=0.05)
    rec, hook_url = await receiver_factory()
    created = await _register(http, url, "CDokumente.create", hook_url)
    assert re.fullmatch(r"[0-9a-f]{17}", created["id"]) and len(created["secretKey"]) == 32
    updated = await _register(http, url, "CDokumente.update", hook_url)
    deleted = await _register(http, url, "CDokumente.delete", hook_url)
    secrets = {h["id"]: h["secretKey"] for h in (created, updated, deleted)}
    assert await status(http.post(f"{url}/api/v1/Webhook", json={"event": "CDokumente.explode", "url": hook_url})) == 400

    ids = []
    for i in range(5):  # through the API
        async with http.post(f"{url}/api/v1/CDokumente", json={"name": f"Akte/{i} Größe", "n": i}) as r:
            ids.append((await r.json())["id"])
    await eventually(lambda: len(rec.items()) == 5)
    rec.requests.clear()
    for i in range(5, 125):  # a burst that is queued at once: batches of at most 50
        ids.append(state.create("CDokumente", {"name": f"Akte/{i} Größe", "n": i})["id"])
    await eventually(lambda: len(rec.items()) == 120)
    assert [len(json.loads(body)) for _, body in rec.requests] == [50, 50, 20]
    ids = ids[5:]
    for headers, body in rec.requests:
        assert headers["content-type"] == "application/json"
        assert verify_signature(headers, body, secrets) == created["id"]
        assert verify_signature({"x-signature": headers["x-signature"]}, body, secrets) == created["id"]
        assert verify_signature(headers, body + b" ", secrets) is None
        assert body == php_json_encode(json.loads(body))  # exactly PHP's encoding
        assert b"\\/" in body and b"\\u00f6" in body
    items = rec.items()
    assert [x["id"] for x in items] == ids  # all attributes, in order
    assert items[0]["name"] == "Akte/5 Größe" and items[0]["n"] == 5 and "createdAt" in items[0]

    rec.requests.clear()
    assert await status(http.put(f"{url}/api/v1/CDokumente/{ids[0]}", json={"name": "Akte/5 Größe", "n": 99})) == 200
    async with http.put(f"{url}/api/v1/CDokumente/{ids[0]}", json={"n": 99}) as r:  # no change: no event
        assert r.status == 200
    assert await status(http.delete(f"{url}/api/v1/CDokumente/{ids[1]}")) == 200
    await eventually(lambda: len(rec.items()) == 2)
    await asyncio.sleep(0.15)
    by_hook = {verify_signature(h, b, secrets): json.loads(b) for h, b in rec.requests}
    assert by_hook[updated["id"]] == [{"n": 99, "id": ids[0]}]
    assert by_hook[deleted["id"]] == [{"id": ids[1]}]
    deliveries = state.dispatcher.deliveries
    assert all(d["outcome"] == "success" for d in deliveries)
    async with http.get(f"{url}/_sim/webhook-deliveries") as r:
        assert len(await r.json()) == len(deliveries)


async def test_field_update_and_link_notifications(demo: tuple[str, EspoCRMState], http: aiohttp.ClientSession, receiver_factory: Any) -> None:
    url, _ = demo
    rec, hook_url = await receiver_factory()
    await _register(http, url, "CDokumente.fieldUpdate.xaiSyncStatus", hook_url)
    await _register(http, url, "CDokumente.link", hook_url)
    await _register(http, url, "CDokumente.unlink", hook_url)
    await _register(http, url, "CDokumente.update", hook_url)
    assert await status(http.put(f"{url}/api/v1/CDokumente/{DOC_KUENDIGUNG}", json={"xaiSyncStatus": "clean"})) == 200
    assert await status(http.post(f"{url}/api/v1/Account/{ACC}/dokumente", json={"id": DOC_KUENDIGUNG})) == 200
    assert await status(http.delete(f"{url}/api/v1/CDokumente/{DOC_KUENDIGUNG}/raeumungsklagen", json={"id": RK})) == 200
    await eventually(lambda: len(rec.items()) == 4)
    items = rec.items()
    assert {"id": DOC_KUENDIGUNG, "xaiSyncStatus": "clean"} in items  # fieldUpdate and update look alike here
    assert {"entityType": "Account", "entityId": ACC, "documentId": DOC_KUENDIGUNG} in items
    assert {"entityType": "Raeumungsklage", "entityId": RK, "documentId": DOC_KUENDIGUNG} in items
    assert items.count({"id": DOC_KUENDIGUNG, "xaiSyncStatus": "clean"}) == 2


async def test_webhook_retries_on_503(make_sim: Maker, http: aiohttp.ClientSession, receiver_factory: Any) -> None:
    url, state = await make_sim(webhook_debounce=0.01, webhook_retry_interval=0.1, webhook_attempts=4)
    rec, hook_url = await receiver_factory([503, 503])
    hook = await _register(http, url, "Account.create", hook_url)
    started = time.monotonic()
    assert await status(http.post(f"{url}/api/v1/Account", json={"name": "Retry GmbH"})) == 200
    assert time.monotonic() - started < 0.5  # sending does not block the API answer
    await eventually(lambda: len(rec.requests) == 3)
    bodies = [b for _, b in rec.requests]
    assert bodies[0] == bodies[1] == bodies[2]
    await eventually(lambda: state.dispatcher.pending() == 0)
    outcomes = [(d["status"], d["outcome"], d["attempt"]) for d in state.dispatcher.deliveries]
    assert outcomes == [(503, "retry", 1), (503, "retry", 2), (200, "success", 3)]
    assert hook["id"] in state.dispatcher.webhooks


async def test_webhook_gives_up_after_max_attempts_and_on_other_4xx(make_sim: Maker, http: aiohttp.ClientSession, receiver_factory: Any) -> None:
    url, state = await make_sim(webhook_debounce=0.01, webhook_retry_interval=0.05, webhook_attempts=3)
    rec, hook_url = await receiver_factory([500] * 10)
    await _register(http, url, "Account.create", hook_url)
    assert await status(http.post(f"{url}/api/v1/Account", json={"name": "A"})) == 200
    await eventually(lambda: state.dispatcher.pending() == 0)
    await asyncio.sleep(0.15)
    assert len(rec.requests) == 3
    assert state.dispatcher.deliveries[-1]["outcome"] == "failed"

    rec2, hook_url2 = await receiver_factory([400])
    await _register(http, url, "Account.delete", hook_url2)
    async with http.get(f"{url}/api/v1/Account") as r:
        acc_id = (await r.json())["list"][0]["id"]
    assert await status(http.delete(f"{url}/api/v1/Account/{acc_id}")) == 200
    await eventually(lambda: state.dispatcher.pending() == 0)
    await asyncio.sleep(0.15)
    assert len(rec2.requests) == 1  # 400 is not retried


async def test_webhook_is_deleted_on_410(make_sim: Maker, http: aiohttp.ClientSession, receiver_factory: Any) -> None:
    url, state = await make_sim(webhook_debounce=0.01, webhook_retry_interval=0.05)
    rec, hook_url = await receiver_factory([410])
    hook = await _register(http, url, "Account.create", hook_url)
    assert await status(http.post(f"{url}/api/v1/Account", json={"name": "Gone"})) == 200
    await eventually(lambda: len(rec.requests) == 1)
    await eventually(lambda: hook["id"] not in state.dispatcher.webhooks)
    async with http.get(f"{url}/api/v1/Webhook") as r:
        assert (await r.json())["total"] == 0
    assert await status(http.post(f"{url}/api/v1/Account", json={"name": "Gone 2"})) == 200
    await asyncio.sleep(0.15)
    assert len(rec.requests) == 1


async def test_webhook_retries_when_receiver_is_down(make_sim: Maker, http: aiohttp.ClientSession) -> None:
    from simulators.runner import free_port

    url, state = await make_sim(webhook_debounce=0.01, webhook_retry_interval=0.05, webhook_attempts=2)
    await _register(http, url, "Account.create", f"http://127.0.0.1:{free_port()}/hook")
    assert await status(http.post(f"{url}/api/v1/Account", json={"name": "Down"})) == 200
    await eventually(lambda: len(state.dispatcher.deliveries) == 2)
    assert [(d["status"], d["outcome"]) for d in state.dispatcher.deliveries] == [(0, "retry"), (0, "failed")]


async def test_seeded_webhooks_use_given_secret(make_sim: Maker, http: aiohttp.ClientSession, receiver_factory: Any) -> None:
    rec, hook_url = await receiver_factory()
    seed = {"webhooks": [{"id": "wh1", "event": "CBeteiligte.create", "url": hook_url, "secretKey": "s3cret"}]}
    url, _ = await make_sim(seed=seed, webhook_debounce=0.01)
    assert await status(http.post(f"{url}/api/v1/CBeteiligte", json={"name": "Neu"})) == 200
    await eventually(lambda: len(rec.requests) == 1)
    headers, body = rec.requests[0]
    assert verify_signature(headers, body, {"wh1": "s3cret"}) == "wh1"
    assert verify_signature(headers, body, {"wh1": "other"}) is None
    async with http.post(f"{url}/_sim/webhooks/flush", params={"timeout": "1"}) as r:
        assert (await r.json())["idle"] is True


def test_seed_paths_exist() -> None:
    seed = load_seed_file()
    for att in seed["attachments"]:
        assert Path(SEED_DIR / att["path"]).is_file()
