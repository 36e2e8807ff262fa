"""Unit tests of the party sync (services.parties.executor, .deletes, .imports, .reconcile)
against in-memory fakes of both systems."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.clients.errors import ApiError
from services.parties import plan, state
from services.parties.plan import SyncOutcome
from services.parties.reconcile import next_bookmark, reconcile
from services.platform.models import SyncSource
from tests.services.parties.fakes import World

PARTY = "CBeteiligte"
BANK = "CBankverbindungen"
IBAN = "DE89370400440532013000"
IBAN2 = "GB82WEST12345698765432"


def person(**extra: object) -> dict[str, object]:
    return {
        "name": "Max Mustermann",
        "firstName": "Max",
        "lastName": "Mustermann",
        "emailAddress": "max@example.com",
        "addressCity": "Berlin",
        "addressCountry": "DE",
        **extra,
    }


async def created_party(w: World, **extra: object) -> tuple[str, int]:
    rec = w.espo.user_create(PARTY, person(**extra))
    await w.drain()
    stored = w.espo.table(PARTY)[rec["id"]]
    return rec["id"], int(stored["advowareId"])


async def test_create_in_espocrm_creates_in_advoware_and_stores_the_id() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    party = w.advo.parties[betnr]
    assert party["Name"] == "Mustermann" and party["Vorname"] == "Max" and party["ExterneId"] == espo_id
    rec = w.espo.table(PARTY)[espo_id]
    assert rec["syncStatus"] == "clean" and rec.get("syncError") is None and rec["advowareLastSync"]
    assert w.advo.writes == [("POST", f"party:{betnr}")]
    assert len(w.espo.writes) == 1  # advowareId + status, once; the echo wrote nothing
    assert w.results[0].outcome is SyncOutcome.CREATED
    assert w.results[-1].outcome is SyncOutcome.UNCHANGED
    snap = await w.state.get(state.PARTY_SNAPSHOT_SCOPE, espo_id)
    assert snap["advowareId"] == betnr and snap["fields"]["lastName"] == "Mustermann"


async def test_redundant_webhooks_write_nothing() -> None:
    w = World()
    espo_id, _ = await created_party(w)
    before = w.writes()
    for _ in range(5):
        r = await w.run("party", espo_id)
        assert r.outcome is SyncOutcome.UNCHANGED
    assert w.writes() == before


async def test_crash_between_advoware_create_and_espocrm_update_does_not_duplicate() -> None:
    w = World()
    rec = w.espo.user_create(PARTY, person())
    w.espo.webhooks.clear()
    w.espo.faults.inject("update", 2)  # the link write and the best-effort failed note
    with pytest.raises(ApiError):
        await w.run("party", rec["id"])
    assert len(w.advo.parties) == 1 and "advowareId" not in w.espo.table(PARTY)[rec["id"]]
    # the snapshot is lost too (worst case): ExterneId still finds the party
    await w.state.delete(state.PARTY_SNAPSHOT_SCOPE, rec["id"])
    r = await w.run("party", rec["id"])
    assert r.outcome is SyncOutcome.LINKED
    await w.drain()
    assert len(w.advo.parties) == 1
    assert [m for m, _ in w.advo.writes] == ["POST"]
    assert int(w.espo.table(PARTY)[rec["id"]]["advowareId"]) == next(iter(w.advo.parties))


async def test_update_in_espocrm_goes_to_advoware() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    w.espo.user_update(PARTY, espo_id, {"emailAddress": "neu@example.com", "addressCity": "Hamburg"})
    await w.drain()
    assert w.advo.parties[betnr]["Email"] == "neu@example.com" and w.advo.parties[betnr]["Ort"] == "Hamburg"
    assert w.advo.writes[-1] == ("PUT", f"party:{betnr}")
    assert sum(1 for m, _ in w.advo.writes if m == "PUT") == 1


async def test_update_in_advoware_goes_to_espocrm() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    w.advo.user_update_party(betnr, {"Telefon": "030 999", "Vorname": "Moritz"})
    await w.run("party", espo_id, SyncSource.CRON)
    await w.drain()
    rec = w.espo.table(PARTY)[espo_id]
    assert rec["phoneNumber"] == "030 999" and rec["firstName"] == "Moritz" and rec["name"] == "Moritz Mustermann"
    assert [m for m, _ in w.advo.writes] == ["POST"]  # nothing written back to Advoware


async def test_conflict_newer_side_wins_and_is_recorded() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    w.advo.user_update_party(betnr, {"Email": "advo@example.com", "Ort": "Köln"})
    w.clock.tick(2000)
    w.espo.user_update(PARTY, espo_id, {"emailAddress": "espo@example.com"})  # newer
    await w.drain()
    rec = w.espo.table(PARTY)[espo_id]
    assert w.advo.parties[betnr]["Email"] == "espo@example.com"
    assert rec["emailAddress"] == "espo@example.com"
    assert rec["addressCity"] == "Köln"  # the non-conflicting Advoware change is kept
    assert rec["syncStatus"] == "conflict" and "emailAddress" in rec["syncError"]
    assert any(r.outcome is SyncOutcome.CONFLICT for r in w.results)
    # the conflict note stays on redundant webhooks, and goes with the next real change
    writes = w.writes()
    await w.run("party", espo_id)
    assert w.writes() == writes and w.espo.table(PARTY)[espo_id]["syncStatus"] == "conflict"
    w.espo.user_update(PARTY, espo_id, {"phoneNumber": "1"})
    await w.drain()
    assert w.espo.table(PARTY)[espo_id]["syncStatus"] == "clean"
    assert w.espo.table(PARTY)[espo_id].get("syncError") is None


async def test_conflict_advoware_newer_wins() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    w.espo.user_update(PARTY, espo_id, {"lastName": "Espo", "name": "Max Espo"})
    w.espo.webhooks.clear()  # the webhook is late
    w.clock.tick(2000)
    w.advo.user_update_party(betnr, {"Name": "Advo"})
    await w.run("party", espo_id)
    await w.drain()
    assert w.espo.table(PARTY)[espo_id]["lastName"] == "Advo"
    assert w.espo.table(PARTY)[espo_id]["name"] == "Max Advo"
    assert w.advo.parties[betnr]["Name"] == "Advo"
    assert w.espo.table(PARTY)[espo_id]["syncStatus"] == "conflict"


async def test_missing_name_fails_without_advoware_write_then_recovers() -> None:
    w = World()
    rec = w.espo.user_create(PARTY, {"emailAddress": "x@example.com"})
    await w.drain()
    stored = w.espo.table(PARTY)[rec["id"]]
    assert stored["syncStatus"] == "failed" and "lastName" in stored["syncError"]
    assert w.advo.writes == [] and not w.advo.parties
    w.espo.user_update(PARTY, rec["id"], {"lastName": "Neu"})
    await w.drain()
    assert w.espo.table(PARTY)[rec["id"]]["syncStatus"] == "clean" and len(w.advo.parties) == 1


async def test_invalid_email_fails() -> None:
    w = World()
    rec = w.espo.user_create(PARTY, person(emailAddress="kaputt"))
    await w.drain()
    assert w.espo.table(PARTY)[rec["id"]]["syncStatus"] == "failed" and not w.advo.parties


async def test_advoware_4xx_is_recorded_as_failed_without_exception() -> None:
    w = World()
    rec = w.espo.user_create(PARTY, person())
    w.advo.faults.inject("create", 5, status=400)
    await w.drain()
    stored = w.espo.table(PARTY)[rec["id"]]
    assert stored["syncStatus"] == "failed" and "advoware 400" in stored["syncError"]
    assert w.results[0].outcome is SyncOutcome.FAILED
    # the echo of the failed note tries once more, then the same failure writes nothing
    assert len(w.advo.faults.pending["create"]) == 3 and len(w.espo.writes) == 1


async def test_advoware_5xx_is_raised_for_the_queue_and_noted() -> None:
    w = World()
    rec = w.espo.user_create(PARTY, person())
    w.espo.webhooks.clear()
    w.advo.faults.inject("find", 1, status=503)
    with pytest.raises(ApiError):
        await w.run("party", rec["id"])
    assert w.espo.table(PARTY)[rec["id"]]["syncStatus"] == "failed"
    await w.drain()
    await w.run("party", rec["id"])
    assert w.espo.table(PARTY)[rec["id"]]["syncStatus"] == "clean"


async def test_delete_in_espocrm_deletes_in_advoware() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    w.espo.user_delete(PARTY, espo_id)
    await w.drain()
    assert betnr not in w.advo.parties
    assert w.results[-1].outcome is SyncOutcome.DELETED_IN_ADVOWARE
    assert await w.state.get(state.PARTY_SNAPSHOT_SCOPE, espo_id) is None


async def test_delete_in_espocrm_keeps_a_party_with_matters() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    w.advo.matters.add(betnr)
    w.espo.user_delete(PARTY, espo_id)
    await w.drain()
    assert betnr in w.advo.parties
    assert w.results[-1].outcome is SyncOutcome.KEPT_IN_ADVOWARE
    kept = await w.state.get(state.KEPT_SCOPE, str(betnr))
    assert kept["espoId"] == espo_id and "Akte" in kept["reason"]
    # a later sync of the same id does not try again
    r = await w.run("party", espo_id)
    assert r.outcome is SyncOutcome.KEPT_IN_ADVOWARE and not any(m == "DELETE" for m, _ in w.advo.writes)


async def test_delete_in_advoware_deletes_in_espocrm_with_bank_accounts() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    bank = w.espo.user_create(BANK, {"iban": IBAN, "beteiligteId": espo_id})
    await w.drain()
    w.advo.user_delete_party(betnr)
    r = await w.run("party", espo_id, SyncSource.CRON)
    assert r.outcome is SyncOutcome.DELETED_IN_ESPOCRM
    await w.drain()
    assert espo_id not in w.espo.table(PARTY) and bank["id"] not in w.espo.table(BANK)
    assert w.advo.writes[-1][0] == "POST"  # nothing written to Advoware after the deletion


async def test_bank_account_waits_for_its_party_then_follows() -> None:
    w = World()
    party = w.espo.user_create(PARTY, {"lastName": "Firma"})
    w.espo.webhooks.clear()  # the party's webhook comes later
    bank = w.espo.user_create(BANK, {"iban": "de89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX", "beteiligteId": party["id"]})
    await w.drain()
    assert w.espo.table(BANK)[bank["id"]]["syncStatus"] == "pending_sync"
    assert w.results[-1].outcome is SyncOutcome.WAITING or any(r.outcome is SyncOutcome.WAITING for r in w.results)
    await w.run("party", party["id"])
    await w.drain()
    betnr = int(w.espo.table(PARTY)[party["id"]]["advowareId"])
    stored = w.espo.table(BANK)[bank["id"]]
    assert stored["syncStatus"] == "clean" and stored.get("syncError") is None
    assert w.advo.bank_owner[int(stored["advowareId"])] == betnr
    assert w.advo.banks[int(stored["advowareId"])]["IBAN"] == IBAN
    assert stored["iban"] == "de89 3704 0044 0532 0130 00"  # canonical equal: not rewritten


async def test_invalid_iban_fails_without_advoware_write() -> None:
    w = World()
    espo_id, _ = await created_party(w)
    writes = list(w.advo.writes)
    bank = w.espo.user_create(BANK, {"iban": "DE00370400440532013000", "beteiligteId": espo_id})
    await w.drain()
    stored = w.espo.table(BANK)[bank["id"]]
    assert stored["syncStatus"] == "failed" and "IBAN" in stored["syncError"]
    assert w.advo.writes == writes and not w.advo.banks


async def test_bank_updates_both_ways_and_deletes() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    bank = w.espo.user_create(BANK, {"iban": IBAN, "bankName": "A", "beteiligteId": espo_id})
    await w.drain()
    bank_id = int(w.espo.table(BANK)[bank["id"]]["advowareId"])
    w.espo.user_update(BANK, bank["id"], {"bankName": "B"})
    await w.drain()
    assert w.advo.banks[bank_id]["Bank"] == "B"
    w.advo.user_update_bank(bank_id, {"IBAN": IBAN2})
    await w.run("party", espo_id, SyncSource.CRON)  # cron: party sync re-checks its accounts
    await w.drain()
    assert w.espo.table(BANK)[bank["id"]]["iban"] == IBAN2
    w.espo.user_delete(BANK, bank["id"])
    await w.drain()
    assert bank_id not in w.advo.banks


async def test_bank_crash_retry_links_by_iban() -> None:
    w = World()
    espo_id, _ = await created_party(w)
    bank = w.espo.user_create(BANK, {"iban": IBAN, "beteiligteId": espo_id})
    w.espo.webhooks.clear()
    w.espo.faults.inject("update", 2)
    with pytest.raises(ApiError):
        await w.run("bank", bank["id"])
    await w.state.delete(state.BANK_SNAPSHOT_SCOPE, bank["id"])
    r = await w.run("bank", bank["id"])
    assert r.outcome is SyncOutcome.LINKED and len(w.advo.banks) == 1


async def test_bank_deleted_in_advoware_is_deleted_in_espocrm() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    bank = w.espo.user_create(BANK, {"iban": IBAN, "beteiligteId": espo_id})
    await w.drain()
    bank_id = int(w.espo.table(BANK)[bank["id"]]["advowareId"])
    await w.advo.delete_bank_account(betnr, bank_id)
    r = await w.run("bank", bank["id"], SyncSource.CRON)
    assert r.outcome is SyncOutcome.DELETED_IN_ESPOCRM and bank["id"] not in w.espo.table(BANK)


# --------------------------------------------------------------------------- reconcile


def test_next_bookmark_is_max_geaendert_am_and_skips_seen() -> None:
    parties = [
        {"BetNr": 1, "GeaendertAm": "2026-03-01T12:00:00.100Z"},
        {"BetNr": 2, "GeaendertAm": "2026-03-01T12:00:00.300Z"},
        {"BetNr": 3, "GeaendertAm": "2026-03-01T12:00:00.300Z"},
    ]
    bm, fresh = next_bookmark(None, parties)
    assert bm == {"geaendertAm": "2026-03-01T12:00:00.300Z", "betnrs": [2, 3]} and len(fresh) == 3
    bm2, fresh2 = next_bookmark(bm, parties[1:] + [{"BetNr": 4, "GeaendertAm": "2026-03-01T12:00:00.300Z"}])
    assert [p["BetNr"] for p in fresh2] == [4] and bm2 == {"geaendertAm": "2026-03-01T12:00:00.300Z", "betnrs": [2, 3, 4]}
    bm3, fresh3 = next_bookmark(bm2, [])
    assert bm3 == bm2 and fresh3 == []


async def test_reconcile_pulls_advoware_changes_and_imports_new_parties() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    first = await reconcile(w.espo, w.advo, w.state, now=w.clock())
    # the party Advoware lists as changed is our own create: it equals its snapshot
    assert first.events == [] and first.unchanged_skipped >= 1
    assert (await w.state.get(state.META_SCOPE, state.BOOKMARK_KEY))["betnrs"] == [betnr]
    again = await reconcile(w.espo, w.advo, w.state, now=w.clock())
    assert again.events == []  # nothing new since the bookmark
    w.advo.user_update_party(betnr, {"Ort": "Bonn"})
    new = w.advo.user_create_party({"Name": "Direkt", "Vorname": "In Advoware"})
    report = await reconcile(w.espo, w.advo, w.state, now=w.clock())
    assert report.imported == 1 and report.changed_in_advoware == 2
    for e in report.events:
        await w.run("party", e["data"]["entity_id"], SyncSource.CRON)
    await w.drain()
    assert w.espo.table(PARTY)[espo_id]["addressCity"] == "Bonn"
    imported = [r for r in w.espo.table(PARTY).values() if str(r.get("advowareId")) == str(new["BetNr"])]
    assert len(imported) == 1 and imported[0]["name"] == "In Advoware Direkt"
    assert imported[0]["syncStatus"] == "clean"
    assert w.advo.parties[new["BetNr"]]["ExterneId"] == imported[0]["id"]
    # the import's own writes do not import it twice
    report2 = await reconcile(w.espo, w.advo, w.state, now=w.clock())
    assert report2.imported == 0


async def test_reconcile_requeues_failed_missing_and_stale() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    bad = w.espo.user_create(PARTY, {"emailAddress": "x@example.com"})
    await w.drain()
    await reconcile(w.espo, w.advo, w.state, now=w.clock())  # consume the bookmarks (and the first full run)
    w.advo.user_delete_party(betnr)
    quiet = await reconcile(w.espo, w.advo, w.state, now=w.clock())
    # a normal run lists neither side entirely: the deletion waits for the rotation or a full run
    assert {e["data"]["entity_id"] for e in quiet.events} == {bad["id"]} and quiet.missing == 0 and not quiet.full
    report = await reconcile(w.espo, w.advo, w.state, now=w.clock(), full=True)
    ids = {e["data"]["entity_id"] for e in report.events}
    assert bad["id"] in ids and espo_id in ids and report.missing == 1 and report.requeued_failed == 1
    assert all(e["data"]["source"] == "cron" for e in report.events)
    other_id, _ = await created_party(w, name="Erika M", firstName="Erika", lastName="M")
    later = w.clock() + timedelta(hours=25)
    stale = await reconcile(w.espo, w.advo, w.state, now=later)
    assert other_id in {e["data"]["entity_id"] for e in stale.events} and stale.requeued_stale >= 1


async def test_second_record_pointing_at_a_linked_party_fails() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    other = w.espo.user_create(PARTY, person(name="Kopie", advowareId=betnr))
    await w.drain()
    stored = w.espo.table(PARTY)[other["id"]]
    assert stored["syncStatus"] == "failed" and espo_id in stored["syncError"]
    assert w.advo.parties[betnr]["ExterneId"] == espo_id
    # once the first record is gone, the second one may take the party over
    w.espo.table(PARTY).pop(espo_id)
    await w.run("party", other["id"])
    assert w.advo.parties[betnr]["ExterneId"] == other["id"]
    assert w.espo.table(PARTY)[other["id"]]["syncStatus"] in ("clean", "conflict")


async def test_bank_accounts_of_a_party_deleted_in_espocrm_end_failed() -> None:
    w = World()
    espo_id, betnr = await created_party(w)
    bank = w.espo.user_create(BANK, {"iban": IBAN, "beteiligteId": espo_id})
    await w.drain()
    assert w.espo.table(BANK)[bank["id"]]["syncStatus"] == "clean"
    w.espo.user_delete(PARTY, espo_id)  # EspoCRM does not cascade to the bank account
    await w.drain()
    assert betnr not in w.advo.parties and not w.advo.banks
    stored = w.espo.table(BANK)[bank["id"]]
    assert stored["syncStatus"] == "failed" and espo_id in stored["syncError"]
    assert await w.state.get(state.BANK_SNAPSHOT_SCOPE, bank["id"]) is None


def test_sync_error_comparison_tolerates_a_cut_field() -> None:
    long = "Konflikt " + "x" * 500
    assert plan.same_error(long[:255], long) and plan.same_error(None, None)
    assert not plan.same_error("kurz", "kurz und anders") and not plan.same_error(None, "a")


async def test_production_tables_agree_with_the_fakes_own_knowledge() -> None:
    """The fakes know Advoware from external-apis.md §3 and ISO 13616 on their own (no import
    of services.clients.advoware.paths or of the production IBAN check), so a wrong path,
    field name or IBAN check in production disagrees here instead of passing by construction."""
    from services.clients.advoware import paths as P
    from services.parties.mapping import iban_is_valid
    from tests.services.parties import fakes

    w = World()
    espo_id, betnr = await created_party(w)
    w.espo.user_create(BANK, {"iban": IBAN, "beteiligteId": espo_id})
    await w.drain()
    (bank_id,) = w.advo.banks
    assert (P.BETEILIGTE_PATH, P.beteiligter_path(betnr), P.bankverbindungen_path(betnr), P.bankverbindung_path(betnr, bank_id)) == (
        fakes.party_path(),
        fakes.party_path(betnr),
        fakes.bank_accounts_path(betnr),
        fakes.bank_accounts_path(betnr, bank_id),
    )
    assert ("POST", fakes.party_path()) in w.advo.calls and ("POST", fakes.bank_accounts_path(betnr)) in w.advo.calls
    assert [f.value for f in P.BeteiligterField] == list(fakes.PARTY_FIELDS)
    assert {f.value for f in P.BETEILIGTER_READ_ONLY} == fakes.PARTY_READ_ONLY
    assert [f.value for f in P.BankverbindungField] == list(fakes.BANK_FIELDS)
    for iban in (IBAN, IBAN2, "DE00370400440532013000", "DE8937040044053201300", "XX89370400440532013000", "GB82WEST1234569876543X"):
        assert iban_is_valid(iban) is fakes.iban_checksum_ok(iban), iban
