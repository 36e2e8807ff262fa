"""The drift audit's party, bank-account and calendar rules (services.ops.audit.parties,
services.ops.audit.calendar), without I/O: one test per finding type and its cases."""

from __future__ import annotations

from typing import Any

from services.calendar.plan import Pair
from services.ops.audit.calendar import pair_findings
from services.ops.audit.model import FindingType, RepairAction
from services.ops.audit.parties import bank_findings, party_findings, unlisted_betnrs
from services.ops.entities import OpsEntityType

IBAN = "DE89370400440532013000"


def espo_party(pid: str, betnr: int | None = 100, **kw: Any) -> dict[str, Any]:
    return {"id": pid, "name": f"Anna {pid}", "firstName": "Anna", "lastName": pid, "emailAddress": f"{pid}@example.org",
            "advowareId": betnr, "syncStatus": "clean", **kw}


def advo_party(betnr: int, pid: str | None, **kw: Any) -> dict[str, Any]:
    return {"BetNr": betnr, "Vorname": "Anna", "Name": pid, "Email": f"{pid}@example.org", "ExterneId": pid, **kw}


def types(found: list[Any]) -> list[str]:
    return [f.type.value for f in found]


# --------------------------------------------------------------------------- PARTY_DIFFERS


def test_equal_parties_are_fine_and_a_differing_field_is_shown_side_by_side() -> None:
    assert party_findings([espo_party("p1")], {100: advo_party(100, "p1")}, gone=set(), busy=set()) == []
    found = party_findings([espo_party("p1")], {100: advo_party(100, "p1", Email="neu@example.org")}, gone=set(), busy=set(),
                           snapshots={"p1": {"advowareId": 100, "fields": {"emailAddress": "p1@example.org"}}})
    assert types(found) == ["party_differs"]
    f = found[0]
    assert f.entity and f.entity.type is OpsEntityType.PARTY and f.entity.id == "p1"
    assert f.details["fields"] == {"emailAddress": {"espocrm": "p1@example.org", "advoware": "neu@example.org",
                                                    "snapshot": "p1@example.org", "changed_in": "advoware"}}
    assert "changed in advoware" in f.why
    assert f.repair and f.repair.action is RepairAction.RESYNC and f.repair.events[0]["topic"] == "vmh.beteiligte.update"


def test_a_wrong_back_reference_is_a_difference_too() -> None:
    found = party_findings([espo_party("p1")], {100: advo_party(100, "p1", ExterneId="someone-else")}, gone=set(), busy=set())
    assert types(found) == ["party_differs"] and found[0].details["externe_id"] == "someone-else"


def test_a_party_with_a_sync_pending_in_the_ledger_is_left_out() -> None:
    assert party_findings([espo_party("p1")], {100: advo_party(100, "p1", Email="x@y.de")}, gone=set(), busy={"p1"}) == []


# --------------------------------------------------------------------------- PARTY_COUNTERPART_MISSING


def test_linked_party_missing_in_advoware_needs_the_confirmed_404() -> None:
    parties = [espo_party("p1", 100), espo_party("p2", 200)]
    assert unlisted_betnrs(parties, {200: advo_party(200, "p2")}, set()) == [100]
    assert party_findings(parties, {200: advo_party(200, "p2")}, gone=set(), busy=set()) == []  # not read: no verdict
    found = party_findings(parties, {200: advo_party(200, "p2")}, gone={100}, busy=set())
    assert types(found) == ["party_counterpart_missing"] and found[0].details == {"side": "advoware", "advowareId": 100}
    assert "deletion guard" in found[0].why and found[0].repair and found[0].repair.events[0]["data"]["entity_id"] == "p1"


def test_unlinked_party_is_missing_unless_it_waits_and_names_the_party_found_by_externe_id() -> None:
    found = party_findings([espo_party("p3", None), espo_party("p4", None, syncStatus="pending_sync")],
                           {300: advo_party(300, "p3")}, gone=set(), busy=set())
    assert types(found) == ["party_counterpart_missing"] and found[0].entity and found[0].entity.id == "p3"
    assert found[0].details["found_by_externe_id"] == 300 and "links it" in found[0].why


def test_advoware_party_naming_a_deleted_espocrm_party_is_found_from_a_complete_list_unless_kept() -> None:
    advo = {100: advo_party(100, "p1"), 500: advo_party(500, "deleted-one")}
    found = party_findings([espo_party("p1")], advo, gone=set(), busy=set(), espocrm_complete=True)
    assert types(found) == ["party_counterpart_missing"]
    f = found[0]
    assert f.entity and f.entity.id == "deleted-one" and f.details["side"] == "espocrm"
    assert f.repair and f.repair.events[0]["topic"] == "vmh.beteiligte.delete"
    assert party_findings([espo_party("p1")], advo, gone=set(), busy=set(), espocrm_complete=False) == []
    assert party_findings([espo_party("p1")], advo, gone=set(), busy=set(), espocrm_complete=True, kept={500}) == []


# --------------------------------------------------------------------------- bank accounts


def espo_bank(bid: str, advoware_id: int | None = 7, **kw: Any) -> dict[str, Any]:
    return {"id": bid, "name": f"Konto {bid}", "advowareId": advoware_id, "beteiligteId": "p1", "iban": IBAN, "bic": None,
            "bankName": "Bank", "kontoinhaber": "Anna", "syncStatus": "clean", **kw}


def advo_bank(bank_id: int, **kw: Any) -> dict[str, Any]:
    return {"Id": bank_id, "IBAN": IBAN, "BIC": None, "Bank": "Bank", "Kontoinhaber": "Anna", **kw}


def test_bank_account_whose_fields_differ_is_found() -> None:
    assert bank_findings([espo_bank("b1")], {"p1": 100}, {100: [advo_bank(7)]}, busy=set()) == []
    found = bank_findings([espo_bank("b1")], {"p1": 100}, {100: [advo_bank(7, Kontoinhaber="Bert")]}, busy=set())
    assert types(found) == ["bank_account_differs"]
    assert found[0].details["fields"]["kontoinhaber"]["advoware"] == "Bert"
    assert found[0].repair and found[0].repair.events[0]["topic"] == "vmh.bankverbindungen.update"


def test_bank_account_missing_from_its_partys_list_or_never_created_is_found() -> None:
    found = bank_findings([espo_bank("b1"), espo_bank("b2", None)], {"p1": 100}, {100: [advo_bank(8)]}, busy=set())
    assert sorted(types(found)) == ["bank_account_counterpart_missing"] * 2
    assert {f.key for f in found} == {"gone:7", "unlinked"}


def test_bank_accounts_without_a_linked_party_unread_list_pending_or_busy_are_left_out() -> None:
    banks = [espo_bank("b1"), espo_bank("b2", None, syncStatus="pending_sync"), espo_bank("b3", beteiligteId="p9")]
    assert bank_findings(banks, {"p1": 100, "p9": None}, {}, busy=set()) == []
    assert bank_findings([espo_bank("b1")], {"p1": 100}, {100: []}, busy={"b1"}) == []


# --------------------------------------------------------------------------- CALENDAR_PAIR_BROKEN


def event(eid: str, frnr: int | None, status: str = "confirmed") -> dict[str, Any]:
    props = {"private": {"advowareFrNr": str(frnr)}} if frnr is not None else {}
    return {"id": eid, "status": status, "extendedProperties": props}


def test_intact_pairs_and_unread_sides_are_not_reported() -> None:
    pairs = {1: Pair(1, "e1", "a", "g"), 2: Pair(2, "e2", "a", "g")}
    assert pair_findings("MM", "mm@cal", pairs, appointments={1: {"FrNr": 1}}, appointments_gone=set(),
                         events={"e1": event("e1", 1)}) == []  # pair 2: neither side read


def test_broken_pairs_each_say_why_and_queue_the_employees_full_sync() -> None:
    pairs = {1: Pair(1, "e1", "a", "g"), 2: Pair(2, "e2", "a", "g"), 3: Pair(3, "e3", "a", "g"), 4: Pair(4, "e4", "a", "g"),
             5: Pair(5, "e5", "a", "g"), 6: Pair(6, "e5", "a", "g")}
    found = pair_findings("MM", "mm@cal", pairs,
                          appointments={2: {}, 4: {}, 5: {}, 6: {}}, appointments_gone={1, 3},
                          events={"e1": event("e1", 1), "e2": None, "e3": event("e3", 3, "cancelled"), "e4": event("e4", 99),
                                  "e5": event("e5", 5)})
    by_frnr = {f.details["frnr"]: f for f in found}
    assert set(by_frnr) == {1, 2, 3, 4, 5, 6} and all(f.type is FindingType.CALENDAR_PAIR_BROKEN for f in found)
    assert "404" in by_frnr[1].summary and "still there" in by_frnr[1].summary
    assert "gone" in by_frnr[2].summary and by_frnr[3].details["appointment_gone"] and "stale" in by_frnr[3].summary
    assert "advowareFrNr 99" in by_frnr[4].summary and "also paired" in by_frnr[5].summary
    f = by_frnr[1]
    assert f.entity and f.entity.type is OpsEntityType.EMPLOYEE and f.entity.id == "MM"
    assert f.repair and f.repair.events[0]["topic"] == "calendar.sync.employee"
    assert f.repair.events[0]["data"]["kuerzel"] == "MM" and f.repair.events[0]["data"]["full"] is True
