"""Property-based (hypothesis, stateful) test of the party sync with in-memory fakes.

Random interleavings of edits on both sides, webhook deliveries, cron syncs, redundant
webhooks, injected faults (503 on writes and reads) and deletions must end - after the
queue and one cron sweep have run with the faults gone - with:
- both systems equal in every synced field, for every party that exists;
- no lost update: a field edited on one side only holds that side's last edit; edited on
  both sides, the last edit of one of them (a three-way merge sees states, so an edit
  that restores the last synced value is no change); never a value nobody set;
- no duplicates (one Advoware party per EspoCRM record, ExterneId unique);
- deletions done on both sides;
- a bounded number of writes (no ping-pong).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, invariant, precondition, rule

from services.parties import mapping as M
from services.parties.events import TOPIC_PARTY
from services.parties.reconcile import reconcile
from services.parties.state import PARTY_SNAPSHOT_SCOPE
from tests.services.parties.fakes import World
from tests.state_machines import AsyncMachine, CheckedAtTeardown

PARTY = "CBeteiligte"
BANK = "CBankverbindungen"
IBANS = ["DE89370400440532013000", "GB82WEST12345698765432", "DE02120300000000202051"]
BAD_IBAN = "DE00370400440532013000"
BANK_EDIT_FIELDS = {
    "iban": st.sampled_from(IBANS),
    "bankName": st.sampled_from(["Sparkasse", "Volksbank", None]),
    "kontoinhaber": st.sampled_from(["Max", "Firma", None]),
}
BANK_FIELD_CHOICE = st.sampled_from(["iban", "bankName", "bankName", "kontoinhaber"])
ADVO_BANK_NAME = {f.value: a.value for f, a in M.BANK_TO_ADVOWARE.items()}
EDIT_FIELDS = {
    "emailAddress": st.sampled_from(["a@example.com", "b@example.com", "c@example.com", None]),
    "addressCity": st.sampled_from(["Berlin", "Hamburg", "Köln", None]),
    "phoneNumber": st.sampled_from(["030 1", "040 2", None]),
    "firstName": st.sampled_from(["Max", "Erika", None]),
}
FIELD_CHOICE = st.sampled_from(["emailAddress", "emailAddress", "emailAddress", "addressCity", "phoneNumber", "firstName"])
ADVO_NAME = {f.value: a.value for f, a in M.PARTY_TO_ADVOWARE.items()}
FAULT_OPS = st.sampled_from(
    [("espo", "update"), ("espo", "get"), ("advo", "create"), ("advo", "update"), ("advo", "get"), ("advo", "find")]
)


class PartySyncMachine(AsyncMachine):
    parties = Bundle("parties")
    banks = Bundle("banks")

    def __init__(self) -> None:
        super().__init__()
        self.w = World(quiet=True)
        self.n = 0
        self.user_actions = 0
        self.faults = 0
        # espo id → {field: [(side, value)]} of user edits that changed something
        self.edits: dict[str, dict[str, list[tuple[str, Any]]]] = {}
        self.initial: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()
        self.bank_party: dict[str, str] = {}  # bank espo id → party espo id
        self.bad_banks: set[str] = set()

    # ------------------------------------------------------------------ helpers
    def _betnr(self, espo_id: str) -> int | None:
        rec = self.w.espo.table(PARTY).get(espo_id)
        if rec and rec.get("advowareId"):
            return int(rec["advowareId"])
        snap = self.w.state.data.get(PARTY_SNAPSHOT_SCOPE, {}).get(espo_id)
        return int(snap["advowareId"]) if snap else None

    def _check_history(self, rid: str, final_c: dict[str, Any], fields: list[str]) -> bool:
        """No lost update for one record; returns whether a conflict was recorded for it."""
        for field in fields:
            final = final_c[field]
            history = self.edits.get(rid, {}).get(field, [])
            last = {side: value for side, value in history}
            if not history:
                assert final == self.initial.get(rid, {}).get(field), (rid, field, final)
            elif len(last) == 1:
                assert final == history[-1][1], (rid, field, final, history)
            else:
                assert final in last.values(), (rid, field, final, history)
        return any(r.entity_id == rid and r.conflicts for r in self.w.results)

    def _check_banks(self, linked_parties: dict[int, dict[str, Any]]) -> None:
        w = self.w
        party_ids = {r["id"]: betnr for betnr, r in linked_parties.items()}
        accounted: set[int] = set()
        for bank_id, rec in w.espo.table(BANK).items():
            party_id = rec.get("beteiligteId")
            if party_id not in party_ids:  # its party was deleted in EspoCRM: nothing to follow
                assert rec.get("syncStatus") == "failed", rec
                continue
            if bank_id in self.bad_banks:
                assert rec.get("syncStatus") == "failed" and "IBAN" in rec.get("syncError", ""), rec
                assert not rec.get("advowareId")
                continue
            assert rec.get("advowareId"), rec
            bank_no = int(rec["advowareId"])
            assert w.advo.bank_owner.get(bank_no) == party_ids[party_id]
            assert M.espo_bank_to_canonical(rec) == M.advoware_bank_to_canonical(w.advo.banks[bank_no])
            had_conflict = self._check_history(bank_id, M.espo_bank_to_canonical(rec), M.bank_fields())
            assert rec.get("syncStatus") == ("conflict" if had_conflict and rec.get("syncStatus") == "conflict" else "clean"), rec
            accounted.add(bank_no)
        # no Advoware account without its EspoCRM record (no duplicates from retries)
        assert accounted == set(w.advo.banks), (accounted, set(w.advo.banks))

    def _note(self, espo_id: str, side: str, field: str, value: Any) -> None:
        self.edits.setdefault(espo_id, {}).setdefault(field, []).append((side, value))

    def _user_edit(self, espo_id: str, side: str, field: str, value: Any, current: M.Canonical, write: Callable[[], Any]) -> None:
        """A user sets `field` to `value` on `side` (unless it has that value already): some
        minutes later, written by `write()`, noted for the final check."""
        if current[field] == value:
            return
        self.w.clock.tick(700)
        write()
        self._note(espo_id, side, field, value)
        self.user_actions += 1

    # ------------------------------------------------------------------ rules
    @precondition(lambda self: len(self.initial) < 3)
    @rule(target=parties, first=st.sampled_from(["Max", "Erika"]))
    def create_in_espocrm(self, first: str) -> str:
        self.n += 1
        last = f"Muster{self.n}"
        rec = self.w.espo.user_create(PARTY, {"firstName": first, "lastName": last, "name": f"{first} {last}", "addressCity": "Berlin"})
        self.initial[rec["id"]] = M.espo_party_to_canonical(rec)
        self.user_actions += 1
        return rec["id"]

    @rule(espo_id=parties, data=st.data())
    def edit_in_espocrm(self, espo_id: str, data: st.DataObject) -> None:
        if espo_id in self.deleted or espo_id not in self.w.espo.table(PARTY):
            return
        field = data.draw(FIELD_CHOICE)
        value = data.draw(EDIT_FIELDS[field])
        self.w.clock.tick(700)
        changes: dict[str, Any] = {field: value}
        rec = self.w.espo.table(PARTY)[espo_id]
        if M.espo_party_to_canonical(rec)[field] == value:
            return
        if field == "firstName":
            changes["name"] = M.display_name(value, rec.get("lastName"))
        self.w.espo.user_update(PARTY, espo_id, changes)
        self._note(espo_id, "espo", field, value)
        self.user_actions += 1

    @rule(espo_id=parties, data=st.data())
    def edit_in_advoware(self, espo_id: str, data: st.DataObject) -> None:
        betnr = self._betnr(espo_id)
        if espo_id in self.deleted or betnr is None or betnr not in self.w.advo.parties:
            return
        field = data.draw(FIELD_CHOICE)
        value = data.draw(EDIT_FIELDS[field])
        self._user_edit(espo_id, "advo", field, value, M.advoware_party_to_canonical(self.w.advo.parties[betnr]),
                        lambda: self.w.advo.user_update_party(betnr, {ADVO_NAME[field]: value}))

    @rule(espo_id=parties, side=st.sampled_from(["espo", "advo"]), roll=st.integers(0, 4))
    def delete(self, espo_id: str, side: str, roll: int) -> None:
        if roll or espo_id in self.deleted:  # rarer than edits
            return
        if side == "espo":
            if espo_id not in self.w.espo.table(PARTY):
                return
            self.w.espo.user_delete(PARTY, espo_id)
        else:
            betnr = self._betnr(espo_id)
            if betnr is None or betnr not in self.w.advo.parties:
                return
            self.w.advo.user_delete_party(betnr)
        self.deleted.add(espo_id)
        self.user_actions += 1

    @precondition(lambda self: len(self.bank_party) < 4)
    @rule(target=banks, espo_id=parties, iban=st.sampled_from(IBANS), bad=st.integers(0, 5))
    def create_bank_in_espocrm(self, espo_id: str, iban: str, bad: int) -> str:
        if espo_id not in self.w.espo.table(PARTY):
            espo_id = next(iter(self.w.espo.table(PARTY)), espo_id)
        rec = self.w.espo.user_create(BANK, {"iban": BAD_IBAN if bad == 0 else iban, "beteiligteId": espo_id})
        self.bank_party[rec["id"]] = espo_id
        self.initial[rec["id"]] = M.espo_bank_to_canonical(rec)
        if bad == 0:
            self.bad_banks.add(rec["id"])
        self.user_actions += 1
        return rec["id"]

    @rule(bank_id=banks, data=st.data())
    def edit_bank_in_espocrm(self, bank_id: str, data: st.DataObject) -> None:
        rec = self.w.espo.table(BANK).get(bank_id)
        if rec is None or bank_id in self.bad_banks:
            return
        field = data.draw(BANK_FIELD_CHOICE)
        value = data.draw(BANK_EDIT_FIELDS[field])
        self._user_edit(bank_id, "espo", field, value, M.espo_bank_to_canonical(rec),
                        lambda: self.w.espo.user_update(BANK, bank_id, {field: value}))

    @rule(bank_id=banks, data=st.data())
    def edit_bank_in_advoware(self, bank_id: str, data: st.DataObject) -> None:
        rec = self.w.espo.table(BANK).get(bank_id)
        if rec is None or not rec.get("advowareId") or int(rec["advowareId"]) not in self.w.advo.banks:
            return
        field = data.draw(BANK_FIELD_CHOICE)
        value = data.draw(BANK_EDIT_FIELDS[field])
        bank_no = int(rec["advowareId"])
        self._user_edit(bank_id, "advo", field, value, M.advoware_bank_to_canonical(self.w.advo.banks[bank_no]),
                        lambda: self.w.advo.user_update_bank(bank_no, {ADVO_BANK_NAME[field]: value}))

    @rule()
    def deliver_queue(self) -> None:
        self.run(self.w.drain(swallow=True))

    @rule(espo_id=parties)
    def redundant_webhook(self, espo_id: str) -> None:
        self.w.events.append(("party", espo_id, "webhook"))

    @rule(espo_id=parties)
    def cron_sync(self, espo_id: str) -> None:
        self.w.events.append(("party", espo_id, "cron"))
        self.run(self.w.drain(swallow=True))

    @precondition(lambda self: self.faults < 6)
    @rule(op=FAULT_OPS)
    def inject_fault(self, op: tuple[str, str]) -> None:
        system, name = op
        (self.w.espo if system == "espo" else self.w.advo).faults.inject(name, 1)
        self.faults += 1

    @invariant()
    def never_two_advoware_parties_for_one_record(self) -> None:
        ext = [p.get("ExterneId") for p in self.w.advo.parties.values() if p.get("ExterneId")]
        assert len(ext) == len(set(ext)), ext

    # ------------------------------------------------------------------ final check
    def teardown_check(self) -> None:
        w = self.w
        w.espo.faults.pending.clear()
        w.advo.faults.pending.clear()
        self.run(w.drain())
        # one cron sweep and the queue after it: its rules alone must settle everything -
        # changes on both sides since the bookmarks, failed records, and (a full run, every
        # snapshot due for re-verification) deletions and Advoware-side bank-account edits
        report = self.run(
            reconcile(w.espo, w.advo, w.state, now=w.clock(), import_new=False, full=True, stale_after=timedelta(0), stale_slice=10_000)
        )
        for ev in report.events:
            kind = "party" if ev["topic"].startswith(TOPIC_PARTY) else "bank"
            w.events.append((kind, ev["data"]["entity_id"], "cron"))
        self.run(w.drain())
        writes_after_settle = w.writes()
        for espo_id in list(w.espo.table(PARTY)):
            w.events.append(("party", espo_id, "cron"))
        self.run(w.drain())
        assert w.writes() == writes_after_settle, "a settled system must not write again"

        espo_records = w.espo.table(PARTY)
        linked = {int(r["advowareId"]): r for r in espo_records.values() if r.get("advowareId")}
        # every record linked, every party linked back; no orphans, no duplicates
        assert len(linked) == len(espo_records), [r for r in espo_records.values() if not r.get("advowareId")]
        assert set(linked) == set(w.advo.parties), (set(linked), set(w.advo.parties))
        for betnr, rec in linked.items():
            party = w.advo.parties[betnr]
            assert party["ExterneId"] == rec["id"]
            espo_c = M.espo_party_to_canonical(rec)
            advo_c = M.advoware_party_to_canonical(party)
            assert espo_c == advo_c, (espo_c, advo_c)
            had_conflict = self._check_history(rec["id"], espo_c, M.party_fields())
            if rec.get("syncStatus") == "conflict":
                assert had_conflict and rec.get("syncError")
            else:
                assert rec.get("syncStatus") == "clean", rec
        self._check_banks(linked)
        for espo_id in self.deleted:
            assert espo_id not in espo_records
            assert all(p.get("ExterneId") != espo_id for p in w.advo.parties.values())
        event(f"parties={len(espo_records)}")
        event(f"conflict={any(r.conflicts for r in w.results)}")
        event(f"faults={self.faults > 0}")
        event(f"deleted={bool(self.deleted)}")
        event(f"banks={len(w.espo.table(BANK))}")
        bound = 6 * (self.user_actions + self.faults) + 10
        assert w.writes() <= bound, (w.writes(), bound)


class CheckedMachine(CheckedAtTeardown, PartySyncMachine):
    """The machine hypothesis runs: every run ends with `teardown_check`."""


TestPartySyncStateful = CheckedMachine.TestCase
TestPartySyncStateful.settings = settings(
    max_examples=int(os.environ.get("BETEILIGTE_HYPOTHESIS_EXAMPLES", "250")),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
