"""Call budgets of the party cron's reconcile (services.parties.reconcile), counted in the fakes'
call logs (tests/services/parties/fakes.py: one call per page, like the clients), not timed.

A firm of synced parties (every fifth with a bank account) with their snapshots; the budgets
(issue #16): an idle run costs the same few calls whatever the firm's size and queues nothing;
changes cost calls in proportion to them and queue exactly the changed records; our own
write-backs are not queued again; the rotation re-queues a bounded slice per run and comes
round to every record; both sides are listed entirely only on a full reconcile.
"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest

from services.parties import mapping as M
from services.parties.__main__ import run as parties_command
from services.parties.reconcile import FULL_REQUEST_KEY, full_request_done, full_requested, reconcile
from services.parties.state import (
    BANK_INDEX_SCOPE,
    BANK_SNAPSHOT_SCOPE,
    LAST_FULL_KEY,
    META_SCOPE,
    PARTY_SNAPSHOT_SCOPE,
    utc_iso,
)
from services.platform.models import SyncSource
from tests.services.parties.fakes import World

PARTY = "CBeteiligte"
BANK = "CBankverbindungen"
IDLE_BUDGET = 3
"""One Advoware listing (changed since the bookmark), one EspoCRM listing per entity."""


def iban(n: int) -> str:
    bban = f"{37040044:08d}{n:010d}"
    return f"DE{98 - int(bban + '131400') % 97:02d}{bban}"


def synced_world(n: int) -> World:
    """`n` linked parties, equal on both sides, with their snapshots (verified now)."""
    w = World(quiet=True)
    now = utc_iso(w.clock())
    for i in range(n):
        canonical = M.normalize_party({"firstName": f"V{i}", "lastName": f"N{i}", "emailAddress": f"p{i}@example.com", "addressCity": "Köln"})
        rec = w.espo.user_create(PARTY, {**M.canonical_party_to_espo(canonical), "syncStatus": "clean"})
        party = w.advo.user_create_party({**M.canonical_party_to_advoware(canonical), "ExterneId": rec["id"]})
        betnr = party["BetNr"]
        w.espo.table(PARTY)[rec["id"]]["advowareId"] = betnr
        w.state.data.setdefault(PARTY_SNAPSHOT_SCOPE, {})[rec["id"]] = {
            "espoId": rec["id"], "advowareId": betnr, "fields": canonical, "verifiedAt": now
        }
        if i % 5 == 0:
            bank = M.normalize_bank({"iban": iban(i), "bankName": "Sparkasse"})
            brec = w.espo.user_create(BANK, {**M.canonical_bank_to_espo(bank), "beteiligteId": rec["id"], "syncStatus": "clean"})
            created = w.advo._clean_bank(M.canonical_bank_to_advoware(bank), next(w.advo._bank_id))
            w.advo.banks[created["Id"]], w.advo.bank_owner[created["Id"]] = created, betnr
            w.espo.table(BANK)[brec["id"]]["advowareId"] = created["Id"]
            w.state.data.setdefault(BANK_SNAPSHOT_SCOPE, {})[brec["id"]] = {
                "espoId": brec["id"], "advowareId": created["Id"], "betnr": betnr, "fields": bank, "verifiedAt": now
            }
            w.state.data.setdefault(BANK_INDEX_SCOPE, {})[str(created["Id"])] = brec["id"]
    w.espo.webhooks.clear()
    return w


def clear_calls(w: World) -> None:
    w.espo.calls.clear()
    w.advo.calls.clear()


def calls(w: World) -> int:
    return len(w.espo.calls) + len(w.advo.calls)


def ids(report: Any) -> set[str]:
    return {e["data"]["entity_id"] for e in report.events}


async def sweep(w: World, **kw: Any) -> Any:
    clear_calls(w)
    return await reconcile(w.espo, w.advo, w.state, now=w.clock(), **kw)


async def handle(w: World, report: Any) -> None:
    for e in report.events:
        kind = "party" if e["topic"].startswith("vmh.beteiligte.") else "bank"
        w.events.append((kind, e["data"]["entity_id"], SyncSource.CRON.value))
    await w.drain(limit=2000)


async def test_idle_run_costs_the_same_few_calls_whatever_the_firm() -> None:
    spent = []
    for n in (300, 900):
        w = synced_world(n)
        first = await sweep(w)  # sets the bookmarks (and is the first full reconcile)
        assert first.events == [] and first.full
        idle = await sweep(w)
        assert idle.events == [] and not idle.full
        assert calls(w) <= IDLE_BUDGET, (w.espo.calls, w.advo.calls)
        spent.append(calls(w))
    assert spent[0] == spent[1]


async def test_changes_cost_calls_in_proportion_and_queue_exactly_them() -> None:
    w = synced_world(300)
    await sweep(w)
    espo_ids = list(w.espo.table(PARTY))
    in_espo = espo_ids[10], espo_ids[150], espo_ids[290]
    in_advo = espo_ids[20], espo_ids[160], espo_ids[299]
    for espo_id in in_espo:
        w.espo.user_update(PARTY, espo_id, {"addressCity": "Bonn"})
    for espo_id in in_advo:
        w.advo.user_update_party(int(w.espo.table(PARTY)[espo_id]["advowareId"]), {"Ort": "Aachen"})
    w.espo.webhooks.clear()  # lost webhooks: only the cron can find these changes
    report = await sweep(w)
    assert ids(report) == set(in_espo) | set(in_advo)
    assert report.changed_in_espocrm == 3 and report.changed_in_advoware == 3
    assert calls(w) <= IDLE_BUDGET
    await handle(w, report)
    assert {w.espo.table(PARTY)[i]["addressCity"] for i in in_espo} == {"Bonn"}
    assert {M.advoware_party_to_canonical(w.advo.parties[int(w.espo.table(PARTY)[i]["advowareId"])])["addressCity"] for i in in_espo} == {"Bonn"}
    assert {w.espo.table(PARTY)[i]["addressCity"] for i in in_advo} == {"Aachen"}
    # the next run sees those syncs' own write-backs on both sides: nothing to queue
    echo = await sweep(w)
    assert echo.events == [] and echo.unchanged_skipped >= 6 and calls(w) <= IDLE_BUDGET


async def test_failed_records_are_retried_every_run_within_the_same_listing() -> None:
    w = synced_world(50)
    await sweep(w)
    bad = list(w.espo.table(PARTY))[7]
    w.espo.table(PARTY)[bad]["syncStatus"] = "failed"  # e.g. a sync that gave up, modified long ago
    for _ in range(2):
        report = await sweep(w)
        assert ids(report) == {bad} and report.requeued_failed == 1 and calls(w) <= IDLE_BUDGET


async def test_bank_account_changes_in_espocrm_are_found_moved_ones_too() -> None:
    w = synced_world(50)
    await sweep(w)
    bank_ids = list(w.espo.table(BANK))
    parties = list(w.espo.table(PARTY))
    w.espo.user_update(BANK, bank_ids[0], {"bankName": "Volksbank"})
    w.espo.user_update(BANK, bank_ids[1], {"beteiligteId": parties[3]})  # moved: its fields did not change
    report = await sweep(w)
    assert ids(report) == {bank_ids[0], bank_ids[1]} and calls(w) <= IDLE_BUDGET


async def test_rotation_requeues_a_bounded_slice_and_comes_round_to_every_record() -> None:
    w = synced_world(100)  # 100 parties, 20 bank accounts
    await sweep(w)
    later = w.clock() + timedelta(hours=25)
    seen: set[str] = set()
    for run in range(6):  # the syncs are never run: a record that is not re-verified must not block the others
        clear_calls(w)
        report = await reconcile(w.espo, w.advo, w.state, now=later + timedelta(minutes=10 * run), stale_slice=20)
        assert len(report.events) == report.requeued_stale == 20 and calls(w) <= IDLE_BUDGET
        assert not ids(report) & seen, "a record queued again before every other one had its turn"
        if run == 0:  # parties first among equally stale records (their syncs re-verify their bank accounts)
            assert all(e["topic"].startswith("vmh.beteiligte.") for e in report.events)
        seen |= ids(report)
    assert seen == set(w.espo.table(PARTY)) | set(w.espo.table(BANK))


async def test_a_deletion_in_advoware_is_found_by_the_rotation() -> None:
    w = synced_world(30)
    await sweep(w)
    gone = list(w.espo.table(PARTY))[4]
    w.advo.user_delete_party(int(w.espo.table(PARTY)[gone]["advowareId"]))
    assert (await sweep(w)).events == []  # a normal run lists neither side entirely
    report = await reconcile(w.espo, w.advo, w.state, now=w.clock() + timedelta(hours=25), stale_slice=30)
    await handle(w, report)
    assert gone not in w.espo.table(PARTY)


async def test_full_reconcile_only_when_asked_or_due_and_never_from_a_failed_list() -> None:
    w = synced_world(300)
    await sweep(w)
    gone = list(w.espo.table(PARTY))[4]
    w.advo.user_delete_party(int(w.espo.table(PARTY)[gone]["advowareId"]))
    last_full = await w.state.get(META_SCOPE, LAST_FULL_KEY)

    class FailsTheFullListing:
        """Advoware whose second party listing of the run (the full one) answers 503."""

        def __init__(self, inner: Any) -> None:
            self.inner, self.n = inner, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def list_parties(self, *args: Any, **kw: Any) -> Any:
            self.n += 1
            if self.n == 2:
                w.advo.faults.inject("list", 1)
            return self.inner.list_parties(*args, **kw)

    # a listing that fails queues nothing as missing and leaves the full run due
    failing = await reconcile(w.espo, FailsTheFullListing(w.advo), w.state, now=w.clock(), full=True)
    assert failing.missing == 0 and not failing.full and gone not in ids(failing)
    assert await w.state.get(META_SCOPE, LAST_FULL_KEY) == last_full
    # asked: both sides listed entirely, the missing one queued
    full = await sweep(w, full=True)
    assert full.full and full.missing == 1 and gone in ids(full)
    advo_pages = sum(1 for _, path in w.advo.calls if path.endswith("Beteiligte"))
    assert advo_pages >= 2 and calls(w) > IDLE_BUDGET
    # due: full_every after the last full one, not before
    assert not (await sweep(w, full_every=timedelta(hours=1))).full
    assert (await reconcile(w.espo, w.advo, w.state, now=w.clock() + timedelta(hours=2), full_every=timedelta(hours=1))).full
    assert not (await sweep(w, full_every=None)).full


async def test_an_empty_advoware_list_is_not_trusted_beyond_the_guard_budget() -> None:
    w = synced_world(20)
    await sweep(w)
    for betnr in list(w.advo.parties):
        w.advo.user_delete_party(betnr)
    report = await sweep(w, full=True, guard_budget=5)
    assert report.missing == 0 and not report.full


class FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    async def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    async def exists(self, key: str) -> int:
        return int(key in self.data)

    async def delete(self, key: str) -> int:
        return int(self.data.pop(key, None) is not None)


async def test_full_reconcile_command_sets_the_request_the_cron_takes() -> None:
    redis = FakeRedis()
    out = io.StringIO()
    assert await parties_command(["full-reconcile"], out, redis=redis) == 0
    assert FULL_REQUEST_KEY in redis.data and "full reconcile requested" in out.getvalue()
    assert await full_requested(redis)
    await full_request_done(redis)
    assert not await full_requested(redis)
    with pytest.raises(SystemExit):
        await parties_command(["nonsense"], io.StringIO(), redis=redis)

