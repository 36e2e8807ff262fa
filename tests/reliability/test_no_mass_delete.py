"""No sync deletes data by mistake, on the real stack (a private one: the stand-in engine, the
real worker over src/steps, the simulators, its own Redis database): an Advoware path answering
404 (a wrong path, a permission change) or 503 (an outage) deletes nothing in EspoCRM, an
EspoCRM path answering 404 deletes nothing in Advoware, and real deletes in Advoware stop at the
guard's budget (DELETE_GUARD_MAX_PER_HOUR=2 here) until an operator confirms with
`python -m services.platform.deletion_guard confirm`; a tombstone is restored with `restore`."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.clients.advoware.api import AdvowareAPI
from services.clients.espocrm import EspoCRMAPI
from services.platform.container import advoware_from_settings, espocrm_from_settings, ledger_from_settings
from services.platform.deletion_guard import guard_from_settings
from services.platform.deletion_guard.__main__ import run as guard_command
from services.platform.redis import get_redis
from services.platform.settings import Settings, load_settings
from tests.conftest import RedisServer
from tests.e2e import LEDGER_FAST_ENV
from tests.reliability.private_stack import PrivateStack, clear_faults, sim_fault, start_private_stack
from tests.steps.test_beteiligte_sync import BANK, IBAN, PARTY, count, new_party, requeue, settle

BUDGET = 2


@pytest.fixture
async def guarded_stack(redis_server: RedisServer) -> AsyncIterator[PrivateStack]:
    stack = await start_private_stack(
        redis_server.url, db=11, extra_env={**LEDGER_FAST_ENV, "DELETE_GUARD_MAX_PER_HOUR": str(BUDGET)}
    )
    yield stack
    await stack.stop()


async def sync_all(ps: PrivateStack, ids: list[str]) -> None:
    """A cron sync of each party (what the reconciler queues for a party missing on one side)."""
    for espo_id in ids:
        await requeue(ps.engine, "vmh.beteiligte.update", PARTY, espo_id, source="cron")
    await settle(ps.engine, ps.sims)


async def parties_left(espo: EspoCRMAPI) -> dict[str, dict[str, Any]]:
    return {r["id"]: r async for r in espo.iter_entities(PARTY, select="id,syncStatus,syncError,advowareId")}


async def command(settings: Settings, *argv: str) -> str:
    redis = get_redis(settings.redis_url)
    out = io.StringIO()
    clients = {"espocrm": espocrm_from_settings(settings)}
    try:
        await guard_command(list(argv), out, guard=guard_from_settings(settings, redis), ledger=ledger_from_settings(settings, redis), clients=clients)
    finally:
        await clients["espocrm"].close()
    return out.getvalue()


@pytest.mark.slow
async def test_wrong_paths_and_outages_delete_nothing_and_the_guard_stops_real_deletes(guarded_stack: PrivateStack) -> None:
    ps = guarded_stack
    settings = load_settings(dict(ps.env))
    espo: EspoCRMAPI = espocrm_from_settings(settings)
    advo: AdvowareAPI = advoware_from_settings(settings)
    try:
        linked = [await new_party(ps.engine, ps.sims, espo) for _ in range(5)]
        ids = [rec["id"] for rec, _ in linked]
        for espo_id in ids[:2]:
            await espo.create_entity(BANK, {"iban": IBAN, "beteiligteId": espo_id})
        await settle(ps.engine, ps.sims)
        advo_url, espo_url = ps.sims.advoware.url, ps.sims.espocrm.url

        # 1. Advoware's party path answers 404 everywhere (a wrong path, a permission change)
        await sim_fault(advo_url, {"method": "*", "path": "^/api/v1/advonet/Beteiligte", "status": 404})
        await sync_all(ps, ids)
        left = await parties_left(espo)
        assert set(ids) <= set(left) and await count(espo_url, "^/api/v1/(CBeteiligte|CBankverbindungen)/", "DELETE") == 0
        assert all(left[i]["syncStatus"] == "failed" and "404" in left[i]["syncError"] for i in ids), left
        await clear_faults(advo_url)

        # 2. an Advoware outage: retried by the ledger until dead, nothing deleted
        await sim_fault(advo_url, {"method": "*", "path": "^/api/v1/advonet/Beteiligte", "status": 503})
        await sync_all(ps, ids)
        assert set(ids) <= set(await parties_left(espo))
        await clear_faults(advo_url)

        # 3. EspoCRM's party path answers 404 everywhere: nothing deleted in Advoware
        await sim_fault(espo_url, {"method": "GET", "path": "^/api/v1/CBeteiligte", "status": 404})
        await sync_all(ps, ids)
        await clear_faults(espo_url)
        assert await count(advo_url, "^/api/v1/advonet/Beteiligte/", "DELETE") == 0
        await sync_all(ps, ids)  # healed
        assert all(r["syncStatus"] == "clean" for r in (await parties_left(espo)).values())
        assert json.loads(await command(settings, "status"))["deletes_last_hour"] == 0

        # 4. real deletes in Advoware: the budget goes through, the rest waits for a confirm
        for _, betnr in linked[:4]:
            await advo.delete_party(betnr)
        await sync_all(ps, ids[:4])
        left = await parties_left(espo)
        held = [i for i in ids[:4] if i in left]
        assert len(held) == 4 - BUDGET and ids[4] in left
        assert all(left[i]["syncStatus"] == "failed" and "the guard tripped" in left[i]["syncError"] for i in held)
        status = json.loads(await command(settings, "status"))
        assert status["tripped"] and status["held"] == len(held) and status["tombstones"] == BUDGET
        assert f"{len(held)} held delete(s) approved" in await command(settings, "confirm")
        await settle(ps.engine, ps.sims)  # the sweeper enqueues the confirmed syncs
        assert set(await parties_left(espo)) == {ids[4]}

        # 5. restore one deleted party (unlinked: its Advoware party is really gone) and its bank account
        tomb = next(json.loads(x) for x in (await command(settings, "tombstones", "--json")).splitlines()
                    if json.loads(x)["entity_id"] == ids[0])
        assert "restored espocrm:CBeteiligte:" in await command(settings, "restore", tomb["id"], "--unlink")
        await settle(ps.engine, ps.sims)
        restored = [r for i, r in (await parties_left(espo)).items() if i != ids[4]]
        assert len(restored) == 1 and restored[0]["syncStatus"] == "clean" and restored[0]["advowareId"]
        party = await advo.get_party(int(restored[0]["advowareId"]))
        assert party["ExterneId"] == restored[0]["id"] and party["Name"] == linked[0][0]["lastName"]
        assert len(await advo.list_bank_accounts(int(restored[0]["advowareId"]))) == 1
    finally:
        await espo.close()
        await advo.close()
