"""The EspoCRM simulator loads link-multiple fields like EspoCRM: a record read carries
`{link}Ids` and `{link}Names` of every link that is such a field on its side
(FieldProcessing/LinkMultiple/Loader); list rows carry them only when `select` names them
(LinkMultiple/ListLoader); a link without the field is never loaded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulators.espocrm import EspoCRMState, create_app, state_of
from simulators.runner import RunningApp, start_app

KEY = "test-key"


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, EspoCRMState]]:
    app = create_app(KEY)
    running: RunningApp = await start_app(app)
    yield f"{running.url}/api/v1", state_of(app)
    await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"X-Api-Key": KEY}) as session:
        yield session


async def _json(resp: Any) -> Any:
    async with resp as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_document_read_carries_its_link_ids_and_names(sim: tuple[str, EspoCRMState], http: aiohttp.ClientSession) -> None:
    base, _ = sim
    rk = await _json(http.post(f"{base}/Raeumungsklage", json={"name": "RK A", "status": "Offen"}))
    rk2 = await _json(http.post(f"{base}/Raeumungsklage", json={"name": "RK B", "status": "Offen"}))
    doc = await _json(http.post(f"{base}/CDokumente", json={"name": "d", "raeumungsklagenIds": [rk["id"]]}))
    read = await _json(http.get(f"{base}/CDokumente/{doc['id']}"))
    assert read["raeumungsklagenIds"] == [rk["id"]] and read["raeumungsklagenNames"] == {rk["id"]: "RK A"}
    assert read["beteiligteIds"] == [] and read["accountsIds"] == [] and read["accountsNames"] == {}
    # a link made from the other side shows on the next read; an unlink takes it away
    assert await _json(http.post(f"{base}/Raeumungsklage/{rk2['id']}/dokumente", json={"id": doc["id"]})) is True
    assert sorted((await _json(http.get(f"{base}/CDokumente/{doc['id']}")))["raeumungsklagenIds"]) == sorted([rk["id"], rk2["id"]])
    assert await _json(http.delete(f"{base}/CDokumente/{doc['id']}/raeumungsklagen", json={"id": rk["id"]})) is True
    assert (await _json(http.get(f"{base}/CDokumente/{doc['id']}")))["raeumungsklagenIds"] == [rk2["id"]]


async def test_the_other_side_without_the_field_is_not_loaded(sim: tuple[str, EspoCRMState], http: aiohttp.ClientSession) -> None:
    base, state = sim
    rk = await _json(http.post(f"{base}/Raeumungsklage", json={"name": "RK", "status": "Offen"}))
    await _json(http.post(f"{base}/CDokumente", json={"name": "d", "raeumungsklagenIds": [rk["id"]]}))
    read = await _json(http.get(f"{base}/Raeumungsklage/{rk['id']}"))
    assert "dokumenteIds" not in read and "dokumenteNames" not in read
    assert "raeumungsklagenIds" not in state.entities["CDokumente"][next(iter(state.entities["CDokumente"]))]  # not stored


async def test_list_rows_carry_link_ids_only_when_selected(sim: tuple[str, EspoCRMState], http: aiohttp.ClientSession) -> None:
    base, _ = sim
    rk = await _json(http.post(f"{base}/Raeumungsklage", json={"name": "RK", "status": "Offen"}))
    doc = await _json(http.post(f"{base}/CDokumente", json={"name": "d", "raeumungsklagenIds": [rk["id"]]}))
    plain = (await _json(http.get(f"{base}/CDokumente")))["list"]
    assert [r["id"] for r in plain] == [doc["id"]] and "raeumungsklagenIds" not in plain[0]
    picked = (await _json(http.get(f"{base}/CDokumente", params={"select": "name,raeumungsklagenIds"})))["list"]
    assert picked == [{"id": doc["id"], "name": "d", "raeumungsklagenIds": [rk["id"]]}]


async def test_seeded_link_definitions_say_which_side_has_the_field(http: aiohttp.ClientSession) -> None:
    seed = {
        "linkDefs": [{"entityType": "Account", "link": "kontakte", "foreignEntityType": "Contact",
                      "foreignLink": "firmen", "linkMultipleFieldForeign": True}],
        "entities": {"Account": [{"id": "a1", "name": "A"}], "Contact": [{"id": "c1", "name": "C"}]},
        "links": [{"entityType": "Account", "id": "a1", "link": "kontakte", "foreignId": "c1"}],
    }
    app = create_app(KEY, seed=seed)
    running = await start_app(app)
    try:
        base = f"{running.url}/api/v1"
        assert (await _json(http.get(f"{base}/Contact/c1")))["firmenIds"] == ["a1"]
        assert "kontakteIds" not in await _json(http.get(f"{base}/Account/a1"))
    finally:
        await running.stop()
