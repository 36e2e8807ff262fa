"""Reconcile budget: the calls one party cron run makes, and one idle calendar run, counted in
the simulators' request logs (`GET /_sim/requests`), not timed: the figures do not depend on
the machine.

Parties: the EspoCRM and Advoware simulators seeded (`/_sim/seed`) with a firm of
RECONCILE_BENCH_PARTIES (5,000) parties, every fifth with a bank account, both sides already in
sync, and the snapshots (services.parties.state) that say so. The reconciler
(services.parties.reconcile.reconcile, what the cron step runs) against them:
- first: the first run ever (no bookmark, so it lists both sides once and sets the bookmarks;
  the first full reconcile) - a one-off;
- idle: nothing changed [goal: < 10 calls, nothing queued];
- changed: 3 parties edited in EspoCRM and 3 in Advoware [calls independent of the firm,
  6 syncs queued]; `changed_sync_calls` is what the 6 queued syncs then cost (the handler's);
- rotation: every snapshot older than `stale_after`: the run re-queues its slice (20) and
  `rotation_sync_calls` is what re-verifying them costs - the steady per-run price of
  knowing about deletions and Advoware bank-account edits (every record within
  N / 20 × 10 min);
- full: a full reconcile (asked for, or weekly): both sides listed entirely.
Each scenario's baseline is the reconciler before issue #16 (`git show BASELINE:...`), run in
the same process against a copy of the same state (`before_*`).

Calendar: one employee with 200 appointments and their Google events, synced once, 5 of them
then moved far beyond the window (read once by FrNr, then parked); then an idle run [goal:
0 writes; its reads: one Advoware window listing (TermineActiveSync from/to) and one Google
listing with the stored syncToken; before: every pair outside the window read on every run].
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, session  # noqa: E402

from iii_local.testing import MemoryState  # noqa: E402
from services.calendar.sync import EmployeeSync  # noqa: E402
from services.parties import mapping as M  # noqa: E402
from services.parties.executor import BeteiligteSync  # noqa: E402
from services.parties.reconcile import DEFAULT_STALE_SLICE, reconcile  # noqa: E402
from services.parties.state import BANK_INDEX_SCOPE, BANK_SNAPSHOT_SCOPE, PARTY_SNAPSHOT_SCOPE, utc_iso  # noqa: E402
from services.platform.container import advoware_from_settings, espocrm_from_settings, google_calendar_from_settings  # noqa: E402
from services.platform.deletion_guard import LocalDeletionGuard  # noqa: E402
from services.platform.logging import get_service_logger  # noqa: E402
from services.platform.models import SyncSource  # noqa: E402
from services.platform.settings import CalendarSettings, load_settings  # noqa: E402
from simulators.sandbox import Simulators, start_simulators  # noqa: E402

PARTIES = int(os.environ.get("RECONCILE_BENCH_PARTIES", "5000"))
BANK_EVERY = 5
BASELINE = "803b832"
"""The last commit before the reconciler's bookmarks and rotation (issue #16)."""
CAL = "mm@kanzlei.example"
APPOINTMENTS = 200


class CountingState(MemoryState):
    """The state store, counting its calls (engine calls, not API calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def get(self, scope: str, key: str) -> Any:
        self.calls += 1
        return await super().get(scope, key)

    async def set(self, scope: str, key: str, value: Any) -> Any:
        self.calls += 1
        return await super().set(scope, key, value)

    async def delete(self, scope: str, key: str) -> Any:
        self.calls += 1
        return await super().delete(scope, key)

    async def list(self, scope: str) -> list[Any]:
        self.calls += 1
        return await super().list(scope)

    def copy(self) -> CountingState:
        other = CountingState()
        other.data = copy.deepcopy(self.data)
        return other


def iban(n: int) -> str:
    """A German IBAN with a valid ISO 13616 checksum."""
    bban = f"{37040044:08d}{n:010d}"
    check = 98 - int(bban + "131400") % 97
    return f"DE{check:02d}{bban}"


def firm(n: int, now: datetime) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    """Seeds of both simulators and the snapshots of `n` linked parties (every BANK_EVERY-th
    with a bank account), modified over the last 30 days and verified `now`."""
    parties, banks, advo = [], [], []
    snaps: dict[str, dict[str, Any]] = {PARTY_SNAPSHOT_SCOPE: {}, BANK_SNAPSHOT_SCOPE: {}, BANK_INDEX_SCOPE: {}}
    start = now - timedelta(days=30)
    for i in range(n):
        espo_id, betnr = f"p{i:016x}", 100000 + i
        at = start + timedelta(seconds=i * 500)
        canonical = M.normalize_party(
            {"firstName": f"Vorname{i}", "lastName": f"Name{i}", "emailAddress": f"p{i}@example.com", "addressCity": "Köln",
             "addressPostalCode": "50667", "addressStreet": f"Domstraße {i % 200}", "addressCountry": "DE"}
        )
        stamp = at.strftime("%Y-%m-%d %H:%M:%S")
        parties.append({"id": espo_id, **M.canonical_party_to_espo(canonical), "advowareId": betnr, "syncStatus": "clean",
                        "createdAt": stamp, "modifiedAt": stamp})
        party = {"BetNr": betnr, **M.canonical_party_to_advoware(canonical), "ExterneId": espo_id,
                 "GeaendertAm": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "Bankverbindungen": []}
        snaps[PARTY_SNAPSHOT_SCOPE][espo_id] = {"espoId": espo_id, "advowareId": betnr, "fields": canonical, "verifiedAt": utc_iso(now)}
        if i % BANK_EVERY == 0:
            bank_espo, bank_id = f"b{i:016x}", 500000 + i
            bank = M.normalize_bank({"iban": iban(i), "bankName": "Commerzbank", "kontoinhaber": f"Vorname{i} Name{i}"})
            banks.append({"id": bank_espo, **M.canonical_bank_to_espo(bank), "beteiligteId": espo_id, "advowareId": bank_id,
                          "syncStatus": "clean", "createdAt": stamp, "modifiedAt": stamp})
            party["Bankverbindungen"].append({"Id": bank_id, **M.canonical_bank_to_advoware(bank), "GeaendertAm": party["GeaendertAm"]})
            snaps[BANK_SNAPSHOT_SCOPE][bank_espo] = {"espoId": bank_espo, "advowareId": bank_id, "betnr": betnr, "fields": bank,
                                                     "verifiedAt": utc_iso(now)}
            snaps[BANK_INDEX_SCOPE][str(bank_id)] = bank_espo
        advo.append(party)
    return {"entities": {"CBeteiligte": parties, "CBankverbindungen": banks}}, {"Beteiligte": advo}, snaps


class Logs:
    """The simulators' request logs: cleared, then counted per system (admin calls left out)."""

    def __init__(self, sims: Simulators) -> None:
        self.urls = {"espocrm": sims.espocrm.url, "advoware": sims.advoware.url, "google": sims.google.url}

    async def clear(self) -> None:
        async with session() as s:
            for url in self.urls.values():
                async with s.delete(f"{url}/_sim/requests") as r:
                    await r.read()

    async def calls(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        async with session() as s:
            for name, url in self.urls.items():
                async with s.get(f"{url}/_sim/requests") as r:
                    out[name] = [x for x in await r.json() if not x["path"].startswith("/_sim") and not x["path"].endswith("/Token")]
        return out

    async def count(self, prefix: str) -> dict[str, Any]:
        calls = await self.calls()
        espo, advo = len(calls["espocrm"]), len(calls["advoware"])
        return {f"{prefix}_espocrm_calls": espo, f"{prefix}_advoware_calls": advo, f"{prefix}_calls": espo + advo}


async def post(url: str, body: Any) -> None:
    async with session() as s:
        async with s.post(url, json=body, timeout=None) as r:
            assert r.status < 400, await r.text()


def baseline_module(path: str) -> ModuleType | None:
    """The module at `path` as it was at BASELINE, or None without the history."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE}:{path}"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader(path.replace("/", "_").removesuffix(".py") + "_before_issue16", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{BASELINE}:{path}", "exec"), module.__dict__)  # noqa: S102 - our own history
    return module


async def handle(sync: BeteiligteSync, events: list[dict[str, Any]]) -> int:
    """Run the queued syncs and their follow-ups (like the queue would); returns how many ran."""
    queue, ran = list(events), 0
    while queue:
        ev = queue.pop(0)
        data = ev["data"]
        run = sync.sync_party if ev["topic"].startswith("vmh.beteiligte.") else sync.sync_bank
        result = await run(data["entity_id"], source=SyncSource(data["source"]))
        queue.extend(result.follow_ups)
        ran += 1
    return ran


async def parties_budget(sims: Simulators, settings: Any, logs: Logs, out: dict[str, Any]) -> None:
    espo, advo = espocrm_from_settings(settings), advoware_from_settings(settings)
    try:
        now = datetime.now(UTC)
        espo_seed, advo_seed, snaps = firm(PARTIES, now)
        await post(f"{sims.espocrm.url}/_sim/seed", espo_seed)
        await post(f"{sims.advoware.url}/_sim/seed", advo_seed)
        state = CountingState()
        state.data = copy.deepcopy(snaps)
        before = baseline_module("services/parties/reconcile.py")
        log = get_service_logger("bench")
        out.update(parties=PARTIES, bank_accounts=len(espo_seed["entities"]["CBankverbindungen"]))
        await advo.get_party(100000)  # the token, once

        async def run(prefix: str, st: CountingState, **kw: Any) -> Any:
            await logs.clear()
            st.calls = 0
            report = await reconcile(espo, advo, st, logger=log, now=datetime.now(UTC), **kw)
            out.update(await logs.count(prefix))
            out.update({f"{prefix}_queued": len(report.events), f"{prefix}_state_calls": st.calls})
            return report

        async def run_before(prefix: str) -> None:
            if before is None:
                return
            await logs.clear()
            old = await before.reconcile(espo, advo, state.copy(), logger=log, now=datetime.now(UTC))
            out.update(await logs.count(f"before_{prefix}"))
            out[f"before_{prefix}_queued"] = len(old.events)

        first = await run("first", state)
        assert first.events == [], f"the seeded firm is not in sync: {first.summary()}"
        await run_before("idle")
        await run("idle", state)

        # 3 parties edited in EspoCRM, 3 others in Advoware (the edits themselves are not counted)
        for i in (PARTIES // 10, PARTIES // 2, PARTIES - 7):
            await espo.update_entity("CBeteiligte", f"p{i:016x}", {"addressCity": "Bonn"})
        for i in (PARTIES // 5, 2 * PARTIES // 3, PARTIES - 3):
            await advo.update_party(100000 + i, {"Ort": "Aachen"})
        await run_before("changed")
        changed = await run("changed", state)
        sync = BeteiligteSync(espo, advo, state, logger=log, guard=LocalDeletionGuard())
        await logs.clear()
        out["changed_syncs_run"] = await handle(sync, changed.events)
        out.update(await logs.count("changed_sync"))
        # the next run sees those syncs' own write-backs on both sides: equal to their snapshots
        await run("echo", state)

        # every snapshot due for re-verification: the rotation's slice, and what it costs
        old = utc_iso(datetime.now(UTC) - timedelta(hours=25))
        for scope in (PARTY_SNAPSHOT_SCOPE, BANK_SNAPSHOT_SCOPE):
            for snap in state.data.get(scope, {}).values():
                snap["verifiedAt"] = old
        await run_before("rotation")
        rotation = await run("rotation", state)
        await logs.clear()
        out["rotation_syncs_run"] = await handle(sync, rotation.events)
        out.update(await logs.count("rotation_sync"))
        # a party's sync re-verifies its bank accounts too: the cycle is the parties'
        out["rotation_full_cycle_hours"] = round(len(state.data[PARTY_SNAPSHOT_SCOPE]) / DEFAULT_STALE_SLICE * 10 / 60, 1)

        await run("full", state, full=True)
    finally:
        await espo.close()
        await advo.close()


async def calendar_budget(sims: Simulators, settings: Any, logs: Logs, out: dict[str, Any]) -> None:
    advo, google = advoware_from_settings(settings), google_calendar_from_settings(settings)
    try:
        await post(f"{sims.google.url}/_sim/seed", {"calendars": [{"id": CAL}]})
        termine = [{"FrNr": 700000 + i, "_day": i % 150 - 20, "_time": "09:00:00", "UhrzeitBis": "10:00:00", "Text": f"Termin {i}",
                    "Anwalt": "MM"} for i in range(APPOINTMENTS)]
        await post(f"{sims.advoware.url}/_sim/seed", {"Mitarbeiter": [{"Kuerzel": "MM", "Name": "Meyer"}], "Termine": termine})
        state = MemoryState()
        cal = CalendarSettings(mapping={"MM": CAL}, sync_past_days=30, sync_future_days=180)
        log = get_service_logger("bench")

        def employee() -> EmployeeSync:
            return EmployeeSync("MM", CAL, advoware=advo, google=google, state=state, settings=cal, logger=log)

        first = await employee().run()
        out.update(calendar_appointments=APPOINTMENTS, calendar_first_writes=first.write_count)
        # 5 appointments moved far beyond the window: each is read once by its FrNr, then parked
        moved = [{**t, "_day": cal.sync_future_days + 40} for t in termine[:5]]
        await post(f"{sims.advoware.url}/_sim/seed", {"Termine": moved})
        await employee().run()
        before = baseline_module("services/calendar/sync.py")
        if before is not None:
            await logs.clear()
            old_state = MemoryState()
            old_state.data = copy.deepcopy(state.data)
            await before.EmployeeSync("MM", CAL, advoware=advo, google=google, state=old_state, settings=cal, logger=log).run()
            old_calls = await logs.calls()
            out["before_calendar_idle_reads"] = sum(1 for system in ("google", "advoware") for c in old_calls[system] if c["method"] == "GET")
        await logs.clear()
        idle = await employee().run()
        calls = await logs.calls()
        g_reads = [c for c in calls["google"] if c["method"] == "GET"]
        a_reads = [c for c in calls["advoware"] if c["method"] == "GET"]
        writes = sum(1 for system in ("google", "advoware") for c in calls[system] if c["method"] != "GET")
        out.update(
            calendar_idle_writes=writes,
            calendar_idle_planned_writes=idle.write_count,
            calendar_idle_reads=len(g_reads) + len(a_reads),
            calendar_idle_google_reads=len(g_reads),
            calendar_idle_advoware_reads=len(a_reads),
            calendar_idle_google_mode=idle.google_mode.value,
            calendar_idle_google_sync_token=all("syncToken" in c["query"] for c in g_reads),
            calendar_idle_advoware_window=all("from" in c["query"] and "to" in c["query"] for c in a_reads),
        )
    finally:
        await advo.close()
        await google.close()


async def main() -> None:
    settings = load_settings({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env"})
    sims = await start_simulators(settings, demo=False, use_configured_ports=False)
    try:
        settings = load_settings({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env", **sims.env()})
        logs = Logs(sims)
        out: dict[str, Any] = {}
        await parties_budget(sims, settings, logs, out)
        await calendar_budget(sims, settings, logs, out)
        emit("reconcile_budget", out)
    finally:
        await sims.stop()


if __name__ == "__main__":
    asyncio.run(main())
