"""Party and bank-account deletes under the deletion guard (services.parties.deletes,
services.platform.deletion_guard) against the in-memory fakes: a wrong path or an outage
deletes nothing, a record found again is linked instead, the guard trips after its budget and
an operator's confirm lets the held deletes through; tombstones restore what was deleted."""

from __future__ import annotations

import copy

import pytest

from services.clients.errors import ApiError
from services.parties import state
from services.parties.plan import SyncOutcome
from services.platform.deletion_guard import LocalDeletionGuard, find_tombstone
from services.platform.deletion_guard.restore import restore
from services.platform.models import SyncSource
from tests.services.parties.fakes import World

PARTY = "CBeteiligte"
BANK = "CBankverbindungen"
IBAN = "DE89370400440532013000"


async def linked_parties(w: World, n: int, *, banks: bool = True) -> list[tuple[str, int]]:
    """`n` parties created in EspoCRM (each with a bank account) and synced."""
    out = []
    for i in range(n):
        rec = w.espo.user_create(PARTY, {"firstName": "Max", "lastName": f"Muster{i}", "name": f"Max Muster{i}"})
        if banks:
            w.espo.user_create(BANK, {"iban": IBAN, "beteiligteId": rec["id"]})
        await w.drain()
        out.append((rec["id"], int(w.espo.table(PARTY)[rec["id"]]["advowareId"])))
    return out


def wrong_party_path(w: World) -> None:
    """Every party read answers 404: a wrong path, or a permission change."""
    for op in ("get", "find", "list"):
        w.advo.faults.inject(op, 200, status=404)


async def cron(w: World, espo_id: str) -> SyncOutcome:
    return (await w.run("party", espo_id, SyncSource.CRON)).outcome


async def test_a_wrong_party_path_deletes_nothing_and_heals() -> None:
    w = World()
    parties = await linked_parties(w, 3)
    wrong_party_path(w)
    assert [await cron(w, e) for e, _ in parties] == [SyncOutcome.DELETE_HELD] * 3
    assert len(w.espo.table(PARTY)) == 3 and len(w.espo.table(BANK)) == 3
    for espo_id, _ in parties:
        rec = w.espo.table(PARTY)[espo_id]
        assert rec["syncStatus"] == "failed" and "404" in rec["syncError"] and rec["syncError"].startswith("nicht gelöscht")
    assert await w.state.get(state.PARTY_SNAPSHOT_SCOPE, parties[0][0]) is not None
    w.advo.faults.pending.clear()
    assert SyncOutcome.DELETE_HELD not in [await cron(w, e) for e, _ in parties]
    assert all(r["syncStatus"] == "clean" and not r.get("syncError") for r in w.espo.table(PARTY).values())


async def test_an_advoware_outage_deletes_nothing() -> None:
    w = World()
    [(espo_id, _)] = await linked_parties(w, 1)
    w.advo.faults.inject("get", 3, status=503)
    with pytest.raises(ApiError):
        await cron(w, espo_id)
    w.advo.faults.pending.clear()
    w.advo.faults.inject("find", 3, status=503)  # the 404 is real, the second read fails
    w.advo.user_delete_party(next(iter(w.advo.parties)))
    with pytest.raises(ApiError):
        await cron(w, espo_id)
    assert espo_id in w.espo.table(PARTY) and len(w.espo.table(BANK)) == 1


async def test_a_party_found_again_under_another_betnr_is_linked_not_deleted() -> None:
    w = World()
    [(espo_id, betnr)] = await linked_parties(w, 1, banks=False)
    again = copy.deepcopy(w.advo.parties[betnr])
    w.advo.user_delete_party(betnr)
    new = w.advo.user_create_party({k: v for k, v in again.items() if k not in ("BetNr", "GeaendertAm")})
    assert await cron(w, espo_id) == SyncOutcome.LINKED
    assert int(w.espo.table(PARTY)[espo_id]["advowareId"]) == new["BetNr"]
    assert w.espo.table(PARTY)[espo_id]["syncStatus"] == "clean"


async def test_a_party_404_by_id_but_still_listed_is_held() -> None:
    w = World()
    [(espo_id, betnr)] = await linked_parties(w, 1, banks=False)
    w.advo.faults.inject("get", 1, status=404)
    assert await cron(w, espo_id) == SyncOutcome.DELETE_HELD
    assert "its list holds it" in w.espo.table(PARTY)[espo_id]["syncError"] and betnr in w.advo.parties


async def test_the_guard_trips_after_its_budget_until_an_operator_confirms() -> None:
    guard = LocalDeletionGuard(max_per_hour=2)
    w = World(guard=guard)
    parties = await linked_parties(w, 5)
    for _, betnr in parties[:4]:
        w.advo.user_delete_party(betnr)
    outcomes = [await cron(w, e) for e, _ in parties[:4]]
    assert outcomes == [SyncOutcome.DELETED_IN_ESPOCRM] * 2 + [SyncOutcome.DELETE_HELD] * 2
    held = [e for e, _ in parties[2:4]]
    assert set(w.espo.table(PARTY)) == {*held, parties[4][0]}
    for espo_id in held:
        assert w.espo.table(PARTY)[espo_id]["syncStatus"] == "failed"
        assert "the guard tripped" in w.espo.table(PARTY)[espo_id]["syncError"]
    assert len(w.espo.table(BANK)) == 3  # the held parties keep their bank accounts
    tombs = await guard.tombstones()
    assert [t["entity_id"] for t in tombs] == [parties[1][0], parties[0][0]] and len(tombs[0]["related"]) == 1
    approved = await guard.confirm()
    assert sorted(e["retry"]["data"]["entity_id"] for e in approved) == sorted(held)
    assert [await cron(w, e) for e in held] == [SyncOutcome.DELETED_IN_ESPOCRM] * 2
    assert set(w.espo.table(PARTY)) == {parties[4][0]} and len(w.espo.table(BANK)) == 1


async def test_an_empty_party_list_while_many_are_linked_deletes_nothing() -> None:
    guard = LocalDeletionGuard(max_per_hour=2)
    w = World(guard=guard)
    parties = await linked_parties(w, 4, banks=False)
    for _, betnr in parties:
        w.advo.user_delete_party(betnr)
    assert {await cron(w, e) for e, _ in parties} == {SyncOutcome.DELETE_HELD}
    assert len(w.espo.table(PARTY)) == 4 and (await guard.status())["deletes_last_hour"] == 0
    assert "lists no party at all" in w.espo.table(PARTY)[parties[0][0]]["syncError"]


async def test_a_bank_account_list_answering_404_deletes_no_bank_account() -> None:
    w = World()
    [(espo_id, _)] = await linked_parties(w, 1)
    [bank_id] = list(w.espo.table(BANK))
    w.advo.faults.inject("list_banks", 10, status=404)
    assert (await w.run("bank", bank_id, SyncSource.CRON)).outcome == SyncOutcome.DELETE_HELD
    rec = w.espo.table(BANK)[bank_id]
    assert rec["syncStatus"] == "failed" and "answer 404" in rec["syncError"] and w.advo.banks


async def test_a_bank_account_found_again_by_iban_is_linked_not_deleted() -> None:
    w = World()
    [(espo_id, betnr)] = await linked_parties(w, 1)
    [bank_id] = list(w.espo.table(BANK))
    old = int(w.espo.table(BANK)[bank_id]["advowareId"])
    await w.advo.delete_bank_account(betnr, old)
    new = await w.advo.create_bank_account(betnr, {"IBAN": IBAN})
    assert (await w.run("bank", bank_id, SyncSource.CRON)).outcome == SyncOutcome.LINKED
    assert int(w.espo.table(BANK)[bank_id]["advowareId"]) == new["Id"]


async def test_espocrm_list_answering_404_deletes_nothing_in_advoware() -> None:
    w = World()
    [(espo_id, betnr)] = await linked_parties(w, 1)
    w.espo.user_delete(PARTY, espo_id)
    w.espo.faults.inject("list", 5, status=404)
    assert (await w.run("party", espo_id)).outcome == SyncOutcome.DELETE_HELD
    assert betnr in w.advo.parties and await w.state.get(state.PARTY_SNAPSHOT_SCOPE, espo_id) is not None
    w.espo.faults.pending.clear()
    assert (await w.run("party", espo_id)).outcome == SyncOutcome.DELETED_IN_ADVOWARE
    assert betnr not in w.advo.parties


async def test_espocrm_404_for_a_record_it_still_lists_deletes_nothing() -> None:
    w = World()
    [(espo_id, betnr)] = await linked_parties(w, 1)
    [bank_id] = list(w.espo.table(BANK))
    w.espo.faults.inject("get", 1, status=404)
    result = await w.run("party", espo_id)
    assert result.outcome == SyncOutcome.DELETE_HELD and "still lists it" in str(result.message)
    w.espo.faults.inject("get", 1, status=404)
    assert (await w.run("bank", bank_id)).outcome == SyncOutcome.DELETE_HELD
    assert betnr in w.advo.parties and w.advo.banks


async def test_espocrm_deletes_count_against_the_budget_and_keep_advoware_tombstones() -> None:
    guard = LocalDeletionGuard(max_per_hour=1)
    w = World(guard=guard)
    parties = await linked_parties(w, 3)
    for espo_id, _ in parties[:2]:
        w.espo.user_delete(PARTY, espo_id)
    assert [(await w.run("party", e)).outcome for e, _ in parties[:2]] == [SyncOutcome.DELETED_IN_ADVOWARE, SyncOutcome.DELETE_HELD]
    assert parties[1][1] in w.advo.parties
    [tomb] = await guard.tombstones()
    assert tomb["system"] == "advoware" and tomb["record"]["BetNr"] == parties[0][1] and tomb["related"][0]["record"]["IBAN"] == IBAN
    await guard.confirm()
    assert (await w.run("party", parties[1][0])).outcome == SyncOutcome.DELETED_IN_ADVOWARE
    restored = await restore(tomb, advoware=w.advo)
    party = w.advo.parties[int(restored["id"])]
    assert party["ExterneId"] == parties[0][0] and party["Name"] == "Muster0" and len(restored["related"]) == 1


async def test_a_wrong_delete_is_restored_and_linked_again() -> None:
    guard = LocalDeletionGuard()
    w = World(guard=guard)
    [(espo_id, betnr)] = await linked_parties(w, 1)
    kept = copy.deepcopy(w.advo.parties[betnr]), copy.deepcopy(w.advo.banks), dict(w.advo.bank_owner)
    w.advo.user_delete_party(betnr)
    assert await cron(w, espo_id) == SyncOutcome.DELETED_IN_ESPOCRM and not w.espo.table(PARTY)
    w.advo.parties[betnr], w.advo.banks, w.advo.bank_owner = kept  # Advoware had it after all
    [tomb] = await guard.tombstones()
    restored = await restore(tomb, espocrm=w.espo)
    await w.drain()
    rec = w.espo.table(PARTY)[restored["id"]]
    assert int(rec["advowareId"]) == betnr and rec["syncStatus"] == "clean"
    assert w.advo.parties[betnr]["ExterneId"] == restored["id"]
    [bank] = w.espo.table(BANK).values()
    assert bank["beteiligteId"] == restored["id"] and bank["syncStatus"] == "clean" and len(w.advo.banks) == 1
    assert await find_tombstone(guard, tomb["id"]) == tomb
