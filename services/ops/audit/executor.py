"""The drift audit's executor: pages through EspoCRM, xAI, Advoware and Google, hands the
pages to the pure finding rules (collections.py, parties.py, calendar.py) and reports what it
found and what it could not check. Read-only: it writes nothing anywhere (the report is stored
by the caller, services.ops.audit.store).

Bounds: every API call counts against `max_calls` (services.clients.http.CallMeter, every
attempt of every client) and the whole run against `max_seconds`. When either is spent the
running check stops, is reported incomplete ("call budget spent", "time budget spent") and the
checks after it do not run; a system that fails marks only its check incomplete. Rules that
conclude "missing" need a complete listing (or a second read by id) of that side, so a cut-short
audit reports less, never something false. Entities with a live ledger mark (a sync pending or
running) are left out and counted as `skipped_busy`.

Second reads: a party or bank account whose listed fields differ is read again on both sides
before it is reported (a change that raced the audit disappears); a linked party Advoware does
not list is read by its BetNr (404 → confirmed missing); a paired appointment or event the
windowed lists did not return is read by id.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from services.calendar.sync import STATE_SCOPE, EmployeeState, berlin_today, google_range, sync_window
from services.clients.advoware.paths import TerminField
from services.clients.errors import IntegrationError, NotFoundError
from services.clients.google_calendar import is_cancelled
from services.clients.http import CallBudgetSpent, CallMeter, metered
from services.documents.plan import ENTITY_DOCUMENTS_LINK
from services.ops.audit import calendar as cal
from services.ops.audit import collections as col
from services.ops.audit import parties as par
from services.ops.audit.model import AuditReport, Check, CheckRun, Finding, FindingType
from services.ops.systems import Systems
from services.ops.view import describe
from services.parties.plan import PARTY_FK, int_or_none
from services.parties.state import BANK_SNAPSHOT_SCOPE, KEPT_SCOPE, PARTY_SNAPSHOT_SCOPE
from services.platform.ledger import SyncKind
from services.platform.models import LINKABLE_ENTITY_TYPES, EntityType

PAGE_SIZE = 200
ADVOWARE_PAGE_SIZE = 500
LOOKUP_CHUNK = 100
"""Document ids looked up per EspoCRM list call (`id in [...]`)."""
BUSY_SCAN = 10000
"""Live ledger marks read per kind to leave their entities out."""
DOCUMENT_SELECT = "id,name,fileId,xaiId,xaiSyncStatus,xaiCollections"


class _Stop(Exception):
    """A budget is spent: the audit ends after noting it."""


@dataclass
class _Run:
    systems: Systems
    meter: CallMeter
    deadline: float
    findings: list[Finding] = field(default_factory=list)
    owners: list[col.Owner] | None = None
    xai_collections: set[str] | None = None
    party_betnr: dict[str, int | None] | None = None
    busy: dict[SyncKind, set[str]] = field(default_factory=dict)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


async def _busy(run: _Run) -> None:
    for kind in SyncKind:
        run.busy[kind] = {m.entity_id for m in await run.systems.ledger.live(kind, limit=BUSY_SCAN)}


async def _check_collections(run: _Run, check: CheckRun) -> None:
    s = run.systems
    owners: list[col.Owner] = []
    complete: list[EntityType] = []
    for etype in sorted(LINKABLE_ENTITY_TYPES):
        rule = s.settings.xai.collection_rule_for(etype.value)
        if rule is None:
            continue  # no rule, no collections of that type: nothing to list
        select = ",".join(dict.fromkeys(["id", "name", "xaiCollectionId", rule.field]))
        async for rec in s.espocrm.iter_entities(etype.value, select=select, page_size=PAGE_SIZE):
            owners.append(col.Owner(etype, str(rec["id"]), str(rec.get("name") or ""), rec.get("xaiCollectionId") or None,
                                    s.settings.xai.should_have_collection(etype.value, rec)))
        complete.append(etype)
    collections = [c async for c in s.xai.list_collections()]
    run.owners, run.xai_collections = owners, {str(c.get("collection_id")) for c in collections}
    busy = run.busy.get(SyncKind.COLLECTION, set())
    check.skipped_busy = sum(1 for o in owners if f"{o.entity_type.value}:{o.id}" in busy)
    found = col.ownership_findings(owners, collections, complete_types=complete, collections_complete=True)
    run.findings += [f for f in found if not (f.entity and f.entity.espocrm_type and f"{f.entity.espocrm_type.value}:{f.entity.id}" in busy)]
    check.examined = {"entities": len(owners), "collections": len(collections)}


async def _lookup_documents(run: _Run, ids: list[str]) -> dict[str, dict[str, Any] | None]:
    found: dict[str, dict[str, Any] | None] = {}
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start:start + LOOKUP_CHUNK]
        page = await run.systems.espocrm.list_entities(EntityType.DOKUMENTE.value, max_size=len(chunk), select=DOCUMENT_SELECT,
                                                       where=[{"type": "in", "attribute": "id", "value": chunk}])
        listed = {str(r["id"]): r for r in page.get("list") or []}
        for doc_id in chunk:
            found[doc_id] = listed.get(doc_id)
    return found


async def _check_documents(run: _Run, check: CheckRun) -> None:
    if run.owners is None or run.xai_collections is None:
        raise _Incomplete("needs the collections check, which did not finish")
    s = run.systems
    owned = [o for o in run.owners if o.collection_id and o.collection_id in run.xai_collections]
    busy_docs = run.busy.get(SyncKind.DOCUMENT, set())
    busy_owners = run.busy.get(SyncKind.COLLECTION, set())
    done = 0
    check.examined = {"collections": 0, "of_collections": len(owned), "documents": 0, "files": 0}
    for owner in owned:
        assert owner.collection_id is not None
        if f"{owner.entity_type.value}:{owner.id}" in busy_owners:
            check.skipped_busy += 1
            continue
        try:
            linked = [d async for d in s.espocrm.iter_related(owner.entity_type.value, owner.id, ENTITY_DOCUMENTS_LINK,
                                                              select=DOCUMENT_SELECT, page_size=PAGE_SIZE)]
            files = [x async for x in s.xai.list_documents(owner.collection_id)]
        except NotFoundError:
            continue  # the owner or its collection went away meanwhile: the next audit sees it
        found, strays = col.membership_findings(owner, owner.collection_id, linked, files)
        wanted = [i for i in col.stray_ids(strays) if i not in busy_docs]
        found += col.stray_findings(owner, owner.collection_id, strays, await _lookup_documents(run, wanted) if wanted else {})
        run.findings += [f for f in found if not (f.entity and f.entity.id in busy_docs)]
        check.skipped_busy += sum(1 for d in linked if str(d.get("id")) in busy_docs)
        done += 1
        check.examined.update(collections=done, documents=check.examined["documents"] + len(linked),
                              files=check.examined["files"] + len(files))


async def _check_parties(run: _Run, check: CheckRun) -> None:
    s = run.systems
    busy = run.busy.get(SyncKind.PARTY, set())
    espo = [p async for p in s.espocrm.iter_entities(EntityType.BETEILIGTE.value, select=",".join(par.PARTY_SELECT), page_size=PAGE_SIZE)]
    run.party_betnr = {str(p["id"]): int_or_none(p.get("advowareId")) for p in espo}
    advo: dict[int, dict[str, Any]] = {}
    async for page in s.advoware.list_parties(page_size=ADVOWARE_PAGE_SIZE):
        for rec in page:
            betnr = int_or_none(rec.get(par.BETNR))
            if betnr is not None:
                advo[betnr] = rec
    listed = len(advo)
    gone: set[int] = set()
    for betnr in par.unlisted_betnrs(espo, advo, busy):
        try:
            advo[betnr] = await s.advoware.get_party(betnr)
        except NotFoundError:
            gone.add(betnr)
    first = par.party_findings(espo, advo, gone=gone, busy=busy)
    differing = {f.entity.id for f in first if f.entity and f.type is FindingType.PARTY_DIFFERS}
    snapshots: dict[str, Any] = {}
    by_id = {str(p["id"]): p for p in espo}
    for espo_id in sorted(differing):
        betnr = int_or_none(by_id[espo_id].get("advowareId"))
        try:
            by_id[espo_id] = await s.espocrm.get_entity(EntityType.BETEILIGTE.value, espo_id)
            if betnr is not None:
                advo[betnr] = await s.advoware.get_party(betnr)
        except NotFoundError:
            by_id.pop(espo_id, None)  # changed meanwhile: left to the next audit
        snapshots[espo_id] = await s.state.get(PARTY_SNAPSHOT_SCOPE, espo_id)
    linked = {b for b in run.party_betnr.values() if b is not None}
    kept: set[int] = set()
    for rec in advo.values():
        betnr = int_or_none(rec.get(par.BETNR))
        if rec.get(par.EXTERNE_ID) and str(rec[par.EXTERNE_ID]) not in by_id and betnr is not None and betnr not in linked:
            if await s.state.get(KEPT_SCOPE, str(betnr)):
                kept.add(betnr)
    run.findings += par.party_findings(list(by_id.values()), advo, gone=gone, busy=busy,
                                       snapshots={k: v for k, v in snapshots.items() if isinstance(v, dict)},
                                       espocrm_complete=True, kept=kept)
    check.skipped_busy = sum(1 for p in espo if str(p["id"]) in busy)
    check.examined = {"espocrm_parties": len(espo), "advoware_parties": listed, "read_by_betnr": len(advo) - listed + len(gone)}


async def _check_bank_accounts(run: _Run, check: CheckRun) -> None:
    s = run.systems
    busy = run.busy.get(SyncKind.BANK_ACCOUNT, set())
    banks = [b async for b in s.espocrm.iter_entities(EntityType.BANKVERBINDUNGEN.value, select=",".join(par.BANK_SELECT), page_size=PAGE_SIZE)]
    party_betnr = dict(run.party_betnr or {})
    missing_parties = sorted({str(b.get(PARTY_FK)) for b in banks if b.get(PARTY_FK) and str(b.get(PARTY_FK)) not in party_betnr})
    for party_id in missing_parties:
        try:
            party_betnr[party_id] = int_or_none((await s.espocrm.get_entity(EntityType.BETEILIGTE.value, party_id)).get("advowareId"))
        except NotFoundError:
            party_betnr[party_id] = None
    wanted = sorted({b for x in banks if str(x.get("id")) not in busy for b in [party_betnr.get(str(x.get(PARTY_FK) or ""))] if b is not None})
    accounts: dict[int, list[dict[str, Any]]] = {}
    for betnr in wanted:
        try:
            accounts[betnr] = await s.advoware.list_bank_accounts(betnr)
        except NotFoundError:
            continue  # the party is gone in Advoware: its own finding says so
    first = par.bank_findings(banks, party_betnr, accounts, busy=busy)
    differing = sorted({f.entity.id for f in first if f.entity and f.type is FindingType.BANK_ACCOUNT_DIFFERS})
    snapshots: dict[str, Any] = {}
    by_id = {str(b["id"]): b for b in banks}
    parents: set[int] = set()
    for espo_id in differing:
        try:
            by_id[espo_id] = await s.espocrm.get_entity(EntityType.BANKVERBINDUNGEN.value, espo_id)
        except NotFoundError:
            by_id.pop(espo_id, None)
            continue
        parent = party_betnr.get(str(by_id[espo_id].get(PARTY_FK) or ""))
        if parent is not None:
            parents.add(parent)
        snapshots[espo_id] = await s.state.get(BANK_SNAPSHOT_SCOPE, espo_id)
    for parent in sorted(parents):  # one list per party, however many of its accounts differ
        accounts[parent] = await s.advoware.list_bank_accounts(parent)
    run.findings += par.bank_findings(list(by_id.values()), party_betnr, accounts, busy=busy,
                                      snapshots={k: v for k, v in snapshots.items() if isinstance(v, dict)})
    check.skipped_busy = sum(1 for b in banks if str(b["id"]) in busy)
    check.examined = {"bank_accounts": len(banks), "advoware_lists": len(accounts)}


async def _check_calendar(run: _Run, check: CheckRun) -> None:
    s = run.systems
    busy = run.busy.get(SyncKind.CALENDAR_EMPLOYEE, set())
    window = sync_window(s.settings.calendar, berlin_today())
    time_min, time_max = google_range(window)
    pairs_seen = 0
    employees = 0
    for kuerzel, calendar_id in sorted(s.settings.calendar.mapping.items()):
        if kuerzel in busy:
            check.skipped_busy += 1
            continue
        pairs = EmployeeState.from_state(await s.state.get(STATE_SCOPE, kuerzel)).pairs
        employees += 1
        if not pairs:
            continue
        pairs_seen += len(pairs)
        appointments: dict[int, dict[str, Any]] = {}
        for rec in await s.advoware.list_appointments(kuerzel, *window):
            frnr = int_or_none(rec.get(TerminField.FRNR.value))
            if frnr is not None:
                appointments[frnr] = rec
        items, _ = await s.google.list_all(calendar_id, time_min=time_min, time_max=time_max, show_deleted=False)
        events: dict[str, dict[str, Any] | None] = {str(e["id"]): e for e in items if e.get("id") and not is_cancelled(e)}
        gone: set[int] = set()
        for frnr, pair in sorted(pairs.items()):
            if frnr not in appointments:
                try:
                    appointments[frnr] = await s.advoware.get_appointment(frnr)
                except NotFoundError:
                    gone.add(frnr)
            if pair.event_id not in events:
                events[pair.event_id] = await s.google.get_event(calendar_id, pair.event_id)
        run.findings += cal.pair_findings(kuerzel, calendar_id, pairs, appointments=appointments, appointments_gone=gone, events=events)
    check.examined = {"employees": employees, "pairs": pairs_seen}


class _Incomplete(Exception):
    """A check cannot run or finish for a reason of its own (noted; the audit goes on)."""


CHECKS: dict[Check, Callable[[_Run, CheckRun], Awaitable[None]]] = {
    Check.COLLECTIONS: _check_collections,
    Check.DOCUMENTS: _check_documents,
    Check.PARTIES: _check_parties,
    Check.BANK_ACCOUNTS: _check_bank_accounts,
    Check.CALENDAR: _check_calendar,
}


async def _one(run: _Run, check: CheckRun) -> None:
    """Run one check within the budgets; raise _Stop when a budget is spent."""
    before, started = run.meter.total, time.monotonic()
    try:
        if run.remaining() <= 0:
            raise TimeoutError
        async with asyncio.timeout(run.remaining()):
            await CHECKS[check.check](run, check)
    except CallBudgetSpent:
        check.complete, check.note = False, f"call budget of {run.meter.limit} spent"
        raise _Stop from None
    except TimeoutError:
        check.complete, check.note = False, "time budget spent"
        raise _Stop from None
    except _Incomplete as exc:
        check.complete, check.note = False, str(exc)
    except IntegrationError as exc:
        check.complete, check.note = False, f"stopped: {describe(exc)}"
    finally:
        check.calls, check.seconds = run.meter.total - before, time.monotonic() - started


async def run_audit(systems: Systems, *, max_calls: int, max_seconds: float, trigger: str,
                    checks: Iterable[Check] | None = None) -> AuditReport:
    """One audit (rules: module docstring and the finding modules); never raises for a system."""
    chosen = None if checks is None else set(checks)
    wanted = [c for c in Check if chosen is None or c in chosen]
    started = time.time()
    report = AuditReport(id=f"{int(started)}-{secrets.token_hex(3)}", started_at=started, trigger=trigger,
                         max_calls=max_calls, max_seconds=max_seconds, wanted=wanted)
    meter = CallMeter(max_calls)
    run = _Run(systems, meter, time.monotonic() + max_seconds)
    with metered(meter):
        await _busy(run)
        for check in wanted:
            result = CheckRun(check)
            report.checks.append(result)
            try:
                await _one(run, result)
            except _Stop:
                break
    report.findings = run.findings
    report.calls = dict(meter.calls)
    report.finished_at = time.time()
    return report


__all__ = ["CHECKS", "run_audit"]
