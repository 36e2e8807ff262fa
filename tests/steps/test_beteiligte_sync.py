"""End-to-end: Beteiligte / Bankverbindungen sync through the engine, the real worker,
the EspoCRM and Advoware simulators and Redis.

Each test creates its own records (unique names). "Writes" are counted from the
simulators' request logs (`/_sim/requests`), per record path, so other teams' traffic
does not disturb the counts.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from iii_local.testing import MotiaTester
from services.clients.advoware.api import AdvowareAPI
from services.clients.espocrm import EspoCRMAPI
from services.clients.espocrm_webhooks import php_json_encode, sign_body
from services.parties.reconcile import full_requested, request_full
from services.parties.state import KEPT_SCOPE, PARTY_SNAPSHOT_SCOPE
from services.platform.container import advoware_from_settings, espocrm_from_settings
from services.platform.ledger import SyncKind
from services.platform.redis import get_redis
from services.platform.settings import Settings, load_settings
from simulators.sandbox import Simulators
from tests.steps.conftest import WEBHOOK_ID, WEBHOOK_SECRET, stack_env
from tests.steps.ledger_helpers import dead_mark, live_marks, trigger_cron_once

PARTY = "CBeteiligte"
BANK = "CBankverbindungen"
IBAN = "DE89370400440532013000"
IBAN2 = "GB82WEST12345698765432"
CRON_ID = "steps::VMH Beteiligte Sync Cron::trigger::0"
CRON_STEP = "beteiligte_sync_cron"
RAW = {"Content-Type": "application/octet-stream", "X-Original-Content-Type": "application/json"}
"""How the shipped nginx forwards an EspoCRM webhook to the engine (raw bytes, rows H1/H2)."""


@pytest.fixture
async def settings(redis_url: str, sims: Simulators) -> Settings:
    return load_settings({**stack_env(redis_url), **sims.env()})


@pytest.fixture
async def espo(settings: Settings) -> AsyncIterator[EspoCRMAPI]:
    client = espocrm_from_settings(settings)
    yield client
    await client.close()


@pytest.fixture
async def advo(settings: Settings) -> AsyncIterator[AdvowareAPI]:
    client = advoware_from_settings(settings)
    yield client
    await client.close()


MY_EVENTS = {f"{e}.{a}" for e in (PARTY, BANK) for a in ("create", "update", "delete")}


@pytest.fixture(scope="module", autouse=True)
async def signed_webhooks(sims: Simulators, redis_url: str) -> None:
    """Every webhook the EspoCRM simulator sends for parties and bank accounts is signed with
    an id our secrets know (see tests/e2e.py), so the signature path is exercised end to end."""
    settings = load_settings({**stack_env(redis_url), **sims.env()})
    known = set(settings.espocrm.webhook_secrets)
    hooks = [h for h in (await sim("GET", f"{sims.espocrm.url}/_sim/webhooks")) if h["event"] in MY_EVENTS]
    assert hooks and all(h["id"] in known for h in hooks), hooks


async def sim(method: str, url: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, json=body) as resp:
            text = await resp.text()
            assert resp.status < 400, f"{method} {url} → {resp.status} {text}"
            return json.loads(text) if text else None


async def settle(stack: MotiaTester, sims: Simulators, rounds: int = 40) -> None:
    """Wait until EspoCRM has no webhook pending, the engine is idle and the sync ledger has
    no pending or retrying mark (retries wait there, not in the engine), twice in a row."""
    calm = 0
    for _ in range(rounds):
        flushed = await sim("POST", f"{sims.espocrm.url}/_sim/webhooks/flush?timeout=10")
        try:
            await stack.wait_idle(timeout=60)
            idle = True
        except TimeoutError:  # a run still retrying an outage inside its client: another round
            idle = False
        after = await sim("POST", f"{sims.espocrm.url}/_sim/webhooks/flush?timeout=0.3")
        quiet = idle and flushed["pending"] == 0 and after["pending"] == 0 and await live_marks(stack) == 0
        calm = calm + 1 if quiet else 0
        if calm >= 2:
            return
        if not quiet:
            await asyncio.sleep(0.3)
    raise AssertionError("EspoCRM webhooks, the engine and the sync ledger did not settle")


async def count(url: str, path_re: str, method: str) -> int:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/_sim/requests", params={"path": path_re, "method": method}) as resp:
            return len([r for r in await resp.json() if r["status"] < 400])


async def espo_writes(sims: Simulators, entity: str, rid: str) -> int:
    return await count(sims.espocrm.url, f"^/api/v1/{entity}/{rid}$", "PUT")


async def advo_party_writes(sims: Simulators, betnr: int) -> int:
    return await count(sims.advoware.url, f"^/api/v1/advonet/Beteiligte/{betnr}$", "PUT")


async def dead_for(stack: MotiaTester, topic: str, rid: str) -> list[Any]:
    """Dead letters of `rid`: the engine's (a handler that raised) and the sync ledger's."""
    engine = [d for d in await stack.dead_letters(topic) if (d["job"].get("data") or {}).get("entity_id") == rid]
    kind = SyncKind.PARTY if topic.startswith("vmh.beteiligte.") else SyncKind.BANK_ACCOUNT
    ledger = await dead_mark(stack, kind, rid)
    return engine + ([ledger] if ledger is not None else [])


def uniq(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def new_party(stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, **extra: Any) -> tuple[dict[str, Any], int]:
    last = uniq("Muster")
    rec = await espo.create_entity(
        PARTY,
        {"firstName": "Max", "lastName": last, "name": f"Max {last}", "emailAddress": f"{last.lower()}@example.com", "addressCity": "Berlin", **extra},
    )
    await settle(stack, sims)
    stored = await espo.get_entity(PARTY, rec["id"])
    assert stored.get("advowareId"), stored
    return stored, int(stored["advowareId"])


async def requeue(stack: MotiaTester, topic: str, entity: str, rid: str, source: str = "manual") -> None:
    await stack.enqueue(topic, {"entity_type": entity, "entity_id": rid, "action": "update", "source": source})


# --------------------------------------------------------------------------- tests


async def test_create_in_espocrm_creates_party_once_and_no_ping_pong(
    stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI
) -> None:
    rec, betnr = await new_party(stack, sims, espo, geburtsdatum="1980-05-17", addressCountry="Deutschland")
    party = await advo.get_party(betnr)
    assert party["ExterneId"] == rec["id"] and party["Name"] == rec["lastName"] and party["Vorname"] == "Max"
    assert party["Geburtsdatum"].startswith("1980-05-17") and party["Land"] == "DE"
    assert rec["syncStatus"] == "clean" and not rec.get("syncError") and rec["advowareLastSync"]
    assert (await advo.find_party_by_external_id(rec["id"]))["BetNr"] == betnr
    state = await stack.state_get(PARTY_SNAPSHOT_SCOPE, rec["id"])
    assert state["advowareId"] == betnr
    assert await espo_writes(sims, PARTY, rec["id"]) == 1  # advowareId + status, once
    assert await advo_party_writes(sims, betnr) == 0
    # redundant deliveries (a replayed webhook, a manual re-queue) write nothing
    for _ in range(3):
        await requeue(stack, "vmh.beteiligte.update", PARTY, rec["id"])
    await settle(stack, sims)
    assert await espo_writes(sims, PARTY, rec["id"]) == 1
    assert await advo_party_writes(sims, betnr) == 0


async def test_update_in_espocrm_reaches_advoware(stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI) -> None:
    rec, betnr = await new_party(stack, sims, espo)
    before = await espo_writes(sims, PARTY, rec["id"])
    await espo.update_entity(PARTY, rec["id"], {"emailAddress": "neu@example.com", "phoneNumber": "030 1234"})
    await settle(stack, sims)
    party = await advo.get_party(betnr)
    assert party["Email"] == "neu@example.com" and party["Telefon"] == "030 1234"
    assert await advo_party_writes(sims, betnr) == 1
    # the user's PUT + at most one of ours (advowareLastSync); the echo wrote nothing
    assert await espo_writes(sims, PARTY, rec["id"]) - before <= 2
    stable = await espo_writes(sims, PARTY, rec["id"])
    await requeue(stack, "vmh.beteiligte.update", PARTY, rec["id"])
    await settle(stack, sims)
    assert await espo_writes(sims, PARTY, rec["id"]) == stable and await advo_party_writes(sims, betnr) == 1


async def test_update_in_advoware_reaches_espocrm_via_cron(
    stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI
) -> None:
    rec, betnr = await new_party(stack, sims, espo)
    await advo.update_party(betnr, {"Ort": "Hamburg", "Vorname": "Moritz"})
    await trigger_cron_once(stack, CRON_ID, CRON_STEP)
    await settle(stack, sims)
    stored = await espo.get_entity(PARTY, rec["id"])
    assert stored["addressCity"] == "Hamburg" and stored["firstName"] == "Moritz"
    assert stored["name"] == f"Moritz {rec['lastName']}"
    assert await advo_party_writes(sims, betnr) == 1  # only the user's edit: nothing written back
    bookmark = await stack.state_get("beteiligte_sync_meta", "advoware_bookmark")
    assert bookmark and bookmark["geaendertAm"]


async def test_conflicting_updates_newer_side_wins_and_is_recorded(
    stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI
) -> None:
    rec, betnr = await new_party(stack, sims, espo)
    await advo.update_party(betnr, {"Email": "advo@example.com", "Strasse": "Advoweg 1"})
    await asyncio.sleep(1.1)  # EspoCRM's modifiedAt has whole seconds: make it clearly newer
    await espo.update_entity(PARTY, rec["id"], {"emailAddress": "espo@example.com"})
    await settle(stack, sims)
    stored = await espo.get_entity(PARTY, rec["id"])
    party = await advo.get_party(betnr)
    assert party["Email"] == stored["emailAddress"] == "espo@example.com"
    assert stored["addressStreet"] == "Advoweg 1"  # the other side's non-conflicting change survives
    assert stored["syncStatus"] == "conflict"
    assert "emailAddress" in stored["syncError"] and "espocrm" in stored["syncError"]
    logs = await stack.logs(level="warn", wait_for=f"Conflict on party {rec['id']}")
    assert any(f"Conflict on party {rec['id']}" in r["message"] for r in logs)


async def test_delete_in_espocrm_deletes_in_advoware(stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI) -> None:
    rec, betnr = await new_party(stack, sims, espo)
    await espo.delete_entity(PARTY, rec["id"])
    await settle(stack, sims)
    assert await advo.find_party_by_external_id(rec["id"]) is None
    assert await count(sims.advoware.url, f"^/api/v1/advonet/Beteiligte/{betnr}$", "DELETE") == 1


async def test_delete_in_espocrm_keeps_party_with_matters(
    stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI
) -> None:
    rec, betnr = await new_party(stack, sims, espo)
    nr = 900000 + betnr
    await sim("POST", f"{sims.advoware.url}/_sim/seed", {"Akten": [{"Nr": nr, "Az": f"{nr}/26", "Beteiligte": [{"BetNr": betnr, "Rolle": "Mandant"}]}]})
    await espo.delete_entity(PARTY, rec["id"])
    await settle(stack, sims)
    assert (await advo.get_party(betnr))["BetNr"] == betnr
    kept = await stack.state_get(KEPT_SCOPE, str(betnr))
    assert kept["espoId"] == rec["id"] and "Akte" in kept["reason"]
    assert await dead_for(stack, "vmh.beteiligte.delete", rec["id"]) == []


async def test_delete_in_advoware_deletes_in_espocrm(
    stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI, settings: Settings
) -> None:
    rec, betnr = await new_party(stack, sims, espo)
    bank = await espo.create_entity(BANK, {"iban": IBAN, "bankName": "Testbank", "beteiligteId": rec["id"]})
    await settle(stack, sims)
    await advo.delete_party(betnr)
    # a normal sweep lists neither side entirely (the rotation re-verifies it later): ask for a full one
    redis = get_redis(settings.redis_url)
    await request_full(redis)
    await trigger_cron_once(stack, CRON_ID, CRON_STEP)  # finds the party missing in Advoware
    await settle(stack, sims)
    assert not await full_requested(redis)  # done: the request is gone
    ids = {r["id"] async for r in espo.iter_entities(PARTY, select="id")}
    assert rec["id"] not in ids
    assert bank["id"] not in {r["id"] async for r in espo.iter_entities(BANK, select="id")}


async def test_bank_account_follows_its_party(stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI) -> None:
    last = uniq("Bank")
    party = await espo.create_entity(PARTY, {"lastName": last, "name": last, "rechtsform": "GmbH"})
    bank = await espo.create_entity(BANK, {"iban": "de89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX", "bankName": "Commerzbank", "beteiligteId": party["id"]})
    await settle(stack, sims)
    betnr = int((await espo.get_entity(PARTY, party["id"]))["advowareId"])
    stored = await espo.get_entity(BANK, bank["id"])
    assert stored["syncStatus"] == "clean" and stored["advowareId"]
    accounts = await advo.list_bank_accounts(betnr)
    assert [(a["Id"], a["IBAN"], a["BIC"]) for a in accounts] == [(int(stored["advowareId"]), IBAN, "COBADEFFXXX")]
    # updates both ways
    await espo.update_entity(BANK, bank["id"], {"kontoinhaber": "Firma GmbH"})
    await settle(stack, sims)
    assert (await advo.list_bank_accounts(betnr))[0]["Kontoinhaber"] == "Firma GmbH"
    await advo.update_bank_account(betnr, int(stored["advowareId"]), {"IBAN": IBAN2, "BIC": None})
    await requeue(stack, "vmh.beteiligte.update", PARTY, party["id"], source="cron")  # a cron sweep re-checks accounts
    await settle(stack, sims)
    assert (await espo.get_entity(BANK, bank["id"]))["iban"] == IBAN2
    # delete in EspoCRM → deleted in Advoware
    await espo.delete_entity(BANK, bank["id"])
    await settle(stack, sims)
    assert await advo.list_bank_accounts(betnr) == []


async def test_bank_account_created_only_in_advoware_is_imported_once(
    stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI
) -> None:
    rec, betnr = await new_party(stack, sims, espo)
    created = await advo.create_bank_account(betnr, {"IBAN": IBAN2, "Bank": "Westminster", "Kontoinhaber": "Nur Advoware"})
    bank_id = int(created["Id"])
    for _ in range(2):  # the second sweep must not import it again
        await requeue(stack, "vmh.beteiligte.update", PARTY, rec["id"], source="cron")
        await settle(stack, sims)
    banks = [b async for b in espo.iter_related(PARTY, rec["id"], "bankverbindungen")]
    assert len(banks) == 1, banks
    assert int(banks[0]["advowareId"]) == bank_id and banks[0]["iban"] == IBAN2 and banks[0]["kontoinhaber"] == "Nur Advoware"
    assert banks[0]["syncStatus"] == "clean"
    assert [a["Id"] for a in await advo.list_bank_accounts(betnr)] == [bank_id]  # nothing created back in Advoware


async def test_invalid_iban_fails_without_advoware_write(
    stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI
) -> None:
    rec, betnr = await new_party(stack, sims, espo)
    bank = await espo.create_entity(BANK, {"iban": "DE00370400440532013000", "beteiligteId": rec["id"]})
    await settle(stack, sims)
    stored = await espo.get_entity(BANK, bank["id"])
    assert stored["syncStatus"] == "failed" and "IBAN" in stored["syncError"]
    assert not stored.get("advowareId")
    assert await count(sims.advoware.url, f"^/api/v1/advonet/Beteiligte/{betnr}/Bankverbindungen", "POST") == 0
    assert await advo.list_bank_accounts(betnr) == []


async def test_missing_name_fails_with_reason(stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI) -> None:
    rec = await espo.create_entity(PARTY, {"emailAddress": f"{uniq('x')}@example.com"}, skip_duplicate_check=True)
    await settle(stack, sims)
    stored = await espo.get_entity(PARTY, rec["id"])
    assert stored["syncStatus"] == "failed" and "lastName" in stored["syncError"]
    assert await advo.find_party_by_external_id(rec["id"]) is None


async def test_crash_after_advoware_create_is_retried_without_duplicate(
    stack: MotiaTester, sims: Simulators, sims_reset: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI
) -> None:
    # Every attempt of the client's link write fails (3 tries), the queue retries later.
    await sim(
        "POST",
        f"{sims.espocrm.url}/_sim/faults",
        {"method": "PUT", "path": r"^/api/v1/CBeteiligte/[0-9a-f]+$", "status": 503, "times": 3},
    )
    last = uniq("Crash")
    rec = await espo.create_entity(PARTY, {"lastName": last, "name": last})
    await settle(stack, sims)
    stored = await espo.get_entity(PARTY, rec["id"])
    assert stored["syncStatus"] == "clean" and stored["advowareId"]
    logs = await stack.logs(level="warn", wait_for=f"CBeteiligte {rec['id']}: retryable error")
    assert any(f"CBeteiligte {rec['id']}: retryable error" in r["message"] for r in logs)  # the fault did bite
    parties = [p async for page in advo.list_parties(name=last) for p in page]
    assert len(parties) == 1 and parties[0]["BetNr"] == int(stored["advowareId"])
    assert parties[0]["ExterneId"] == rec["id"]
    assert await dead_for(stack, "vmh.beteiligte.create", rec["id"]) == []


async def test_webhook_endpoints_check_signature_and_body(stack: MotiaTester) -> None:
    body = php_json_encode([{"id": "abc123"}])
    for path in ("/vmh/webhook/beteiligte/update", "/vmh/webhook/bankverbindungen/delete"):
        unsigned = await stack.post(path, data=body, headers=RAW)
        assert unsigned.status == 401
        bad = b'{"no": "id"}'
        resp = await stack.post(path, data=bad, headers={**RAW, "Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, bad)})
        assert resp.status == 400
    watch = await stack.watch("vmh.bankverbindungen.delete")
    ok = await stack.post(
        "/vmh/webhook/bankverbindungen/delete",
        data=php_json_encode([{"id": "gone1"}, {"id": "gone1"}]),
        headers={**RAW, "Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, php_json_encode([{"id": "gone1"}, {"id": "gone1"}]))},
    )
    assert ok.status == 200 and ok.json()["accepted"] == 1
    msgs = await watch.wait_for(1)
    assert msgs[0]["data"]["entity_id"] == "gone1" and msgs[0]["data"]["action"] == "delete"
    await stack.wait_idle()



@pytest.mark.parametrize(("path", "entity_type", "topic"), [
    ("/vmh/webhook/beteiligte/update", PARTY, "vmh.beteiligte.update"),
    ("/vmh/webhook/bankverbindungen/update", BANK, "vmh.bankverbindungen.update"),
])
async def test_the_guides_manual_test_shape_is_accepted_signed_and_bound_to_its_endpoint(
    stack: MotiaTester, path: str, entity_type: str, topic: str
) -> None:
    """The guide's `{"entity_type", "entity_id", "action"}` body, signed and forwarded as nginx
    does (the unsigned curl of the guide: test_guide_requests.py): one event for its id; the
    wrong entity type or action for the endpoint → 400 with the reason, nothing queued."""
    rid = uuid.uuid4().hex[:17]

    async def send(item: dict[str, Any]) -> Any:
        body = php_json_encode(item)
        r = await stack.post(path, data=body, headers={**RAW, "Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, body)})
        return r, await stack.messages(r.headers.get("x-iii-trace-id", ""))

    other = BANK if entity_type == PARTY else PARTY
    for item, reason in (
        ({"entity_type": other, "entity_id": rid, "action": "update"}, f"does not match this endpoint ({entity_type})"),
        ({"entity_type": entity_type, "entity_id": rid, "action": "create"}, "action 'create' does not match this endpoint (update)"),
    ):
        r, msgs = await send(item)
        assert r.status == 400 and reason in r.json()["error"], r.text
        assert msgs == []
    r, msgs = await send({"entity_type": entity_type, "entity_id": rid, "action": "update"})
    assert r.status == 200 and r.json() == {"accepted": 1, "rejected": []}, r.text
    assert [(m["topic"], m["data"]["entity_id"], m["data"]["changed_fields"]) for m in msgs] == [(topic, rid, [])]


async def test_party_created_in_advoware_is_imported_once(
    stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI
) -> None:
    last = uniq("Direkt")
    party = await advo.create_party({"Name": last, "Vorname": "Anna", "Ort": "Bonn", "Land": "DE"})
    betnr = int(party["BetNr"])
    await trigger_cron_once(stack, CRON_ID, CRON_STEP)
    await settle(stack, sims)
    await trigger_cron_once(stack, CRON_ID, CRON_STEP)  # a second sweep must not import it again
    await settle(stack, sims)
    found = await espo.list_entities(PARTY, where=[{"type": "equals", "attribute": "advowareId", "value": betnr}])
    assert found["total"] == 1, found
    rec = found["list"][0]
    assert rec["lastName"] == last and rec["firstName"] == "Anna" and rec["name"] == f"Anna {last}"
    assert rec["addressCity"] == "Bonn" and rec["syncStatus"] == "clean"
    assert (await advo.get_party(betnr))["ExterneId"] == rec["id"]
    assert await count(sims.advoware.url, "^/api/v1/advonet/Beteiligte$", "POST") >= 1


async def test_expired_advoware_token_is_renewed(stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI) -> None:
    rec, betnr = await new_party(stack, sims, espo)
    await sim("POST", f"{sims.advoware.url}/_sim/expire-tokens")
    await espo.update_entity(PARTY, rec["id"], {"addressCity": "Leipzig"})
    await settle(stack, sims)
    assert (await advo.get_party(betnr))["Ort"] == "Leipzig"
    assert (await espo.get_entity(PARTY, rec["id"]))["syncStatus"] == "clean"


async def test_advoware_rejection_is_recorded_with_its_message(
    stack: MotiaTester, sims: Simulators, sims_reset: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI
) -> None:
    rec, betnr = await new_party(stack, sims, espo)
    await sim(
        "POST",
        f"{sims.advoware.url}/_sim/faults",
        {"method": "PUT", "path": rf"^/api/v1/advonet/Beteiligte/{betnr}$", "status": 400, "body": {"Message": "Die PLZ ist ungültig."}},
    )
    await espo.update_entity(PARTY, rec["id"], {"addressPostalCode": "ABC"})
    await settle(stack, sims)
    stored = await espo.get_entity(PARTY, rec["id"])
    assert stored["syncStatus"] == "failed" and "Die PLZ ist ungültig." in stored["syncError"]
    assert (await advo.get_party(betnr)).get("PLZ") is None
    assert await dead_for(stack, "vmh.beteiligte.update", rec["id"]) == []
