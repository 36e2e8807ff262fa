"""The entity view of parties, bank accounts and employees (see services.ops.status).

Parties and bank accounts: the EspoCRM record, its Advoware counterpart (a party by its
`advowareId`, else the one whose `ExterneId` names it; a bank account in its party's list, by
id, else by IBAN), and every synced field side by side in the sync's canonical form with the
last synced snapshot, so "is party Y in Advoware, and is it the same there?" is one look; which
side changed a differing field since the last sync follows from the snapshot.

Employees (by Kürzel): the mapped Google calendar, the stored pairs, the Google sync token and
the last run's record (`calendar_sync_status`: result, counts, error, item errors). No API call:
the drift audit checks the pairs against both calendars.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services.calendar.sync import STATE_SCOPE, STATUS_SCOPE, EmployeeState
from services.clients.errors import NotFoundError
from services.ops.audit.parties import BANK_ID, BETNR, EXTERNE_ID, bank_diffs, party_diffs
from services.ops.entities import EntityRef, OpsEntityType
from services.ops.systems import Systems
from services.ops.view import View
from services.parties import mapping as M
from services.parties.plan import PARTY_FK, int_or_none
from services.parties.state import BANK_SNAPSHOT_SCOPE, PARTY_SNAPSHOT_SCOPE
from services.platform.models import EntityType, SyncStatus

PARTY_FIELDS = ("name", "advowareId", "syncStatus", "syncError", "modifiedAt", "xaiCollectionId", "xaiCollectionEnabled", *M.party_fields())
BANK_FIELDS = ("name", "advowareId", PARTY_FK, "syncStatus", "syncError", "modifiedAt", *M.bank_fields())
PAIRS_SHOWN = 20
BANK_LINK = "bankverbindungen"


def _rows(espo: Mapping[str, Any], advo: Mapping[str, Any] | None, snapshot: Mapping[str, Any] | None,
          fields: list[str], diffs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The synced fields side by side (canonical values)."""
    return [{"field": f, "espocrm": espo.get(f), "advoware": advo.get(f) if advo is not None else None,
             "snapshot": snapshot.get(f) if snapshot is not None else None, "equal": f not in diffs,
             "changed_in": diffs[f]["changed_in"] if f in diffs else None} for f in fields]


def _snapshot_fields(snap: Any, advoware_id: int | None) -> Mapping[str, Any] | None:
    if isinstance(snap, Mapping) and advoware_id is not None and int_or_none(snap.get("advowareId")) == advoware_id:
        fields = snap.get("fields")
        return fields if isinstance(fields, Mapping) else None
    return None


@dataclass(frozen=True)
class _Side:
    """What differs between comparing a party and a bank account."""

    snapshot_scope: str
    advoware_id: str
    diffs: Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any] | None], dict[str, dict[str, Any]]]
    espo_canonical: Callable[[Mapping[str, Any]], dict[str, Any]]
    advoware_canonical: Callable[[Mapping[str, Any]], dict[str, Any]]
    fields: list[str]


PARTY_SIDE = _Side(PARTY_SNAPSHOT_SCOPE, BETNR, party_diffs, M.espo_party_to_canonical, M.advoware_party_to_canonical, M.party_fields())
BANK_SIDE = _Side(BANK_SNAPSHOT_SCOPE, BANK_ID, bank_diffs, M.espo_bank_to_canonical, M.advoware_bank_to_canonical, M.bank_fields())


async def _side_by_side(systems: Systems, view: View, side: _Side, raw: Mapping[str, Any], advo: Mapping[str, Any] | None,
                        found_by: str | None) -> None:
    """The synced fields next to each other and the last snapshot; differing ones of a linked record are a problem."""
    snap: Any = None
    async with view.reading("state"):
        snap = await systems.state.get(side.snapshot_scope, view.ref.id)
    snapshot = _snapshot_fields(snap, int_or_none((advo or {}).get(side.advoware_id)))
    diffs = side.diffs(raw, advo, snapshot) if advo is not None else {}
    if diffs and found_by == "advowareId":
        view.problems.append(f"{len(diffs)} synced field(s) differ from Advoware: " + ", ".join(sorted(diffs)))
    _status_problem(view, raw)
    view.counterparts["fields"] = _rows(side.espo_canonical(raw), side.advoware_canonical(advo) if advo else None, snapshot, side.fields, diffs)
    view.counterparts["snapshot"] = {"advowareId": snap.get("advowareId"), "verifiedAt": snap.get("verifiedAt")} if isinstance(snap, Mapping) else None


def _status_problem(view: View, raw: Mapping[str, Any]) -> None:
    status = raw.get("syncStatus")
    if status == SyncStatus.FAILED.value:
        view.problems.append(f"its last sync failed: {raw.get('syncError') or 'no reason recorded'}")
    elif status == SyncStatus.CONFLICT.value:
        view.notes.append(f"Its last sync resolved a conflict: {raw.get('syncError')}.")


async def party_view(systems: Systems, view: View) -> None:
    raw = await view.espocrm_record(systems, PARTY_FIELDS)
    if raw is None:
        return
    betnr = int_or_none(raw.get("advowareId"))
    advo: dict[str, Any] | None = None
    found_by: str | None = None
    async with view.reading("advoware"):
        if betnr is not None:
            try:
                advo = await systems.advoware.get_party(betnr)
                found_by = "advowareId"
            except NotFoundError:
                view.problems.append(f"Advoware answers 404 for its party {betnr} (deleted there? resync re-checks under the deletion guard)")
        else:
            advo = await systems.advoware.find_party_by_external_id(view.ref.id)
            found_by = "ExterneId" if advo is not None else None
            view.problems.append("it has no Advoware party linked (advowareId is empty)" +
                                 (f"; Advoware party {advo.get(BETNR)} names it by ExterneId (resync links it)" if advo else ""))
    if advo is not None and found_by == "advowareId" and str(advo.get(EXTERNE_ID) or "") != view.ref.id:
        view.problems.append(f"Advoware's ExterneId is {advo.get(EXTERNE_ID)!r}, not this party's id")
    view.counterparts["advoware"] = {"betnr": betnr, "found_by": found_by, "record": advo}
    await _side_by_side(systems, view, PARTY_SIDE, raw, advo, found_by)
    async with view.reading("espocrm"):
        page = await systems.espocrm.list_related(EntityType.BETEILIGTE.value, view.ref.id, BANK_LINK, max_size=50,
                                                  select="id,name,advowareId,syncStatus")
        view.counterparts["bank_accounts"] = [
            {"entity": EntityRef(OpsEntityType.BANK_ACCOUNT, str(b["id"])).as_json(), "name": b.get("name"),
             "advowareId": b.get("advowareId"), "syncStatus": b.get("syncStatus")} for b in page.get("list") or []]
    should = systems.settings.xai.should_have_collection(EntityType.BETEILIGTE.value, raw)
    view.counterparts["xai"] = {"should_have": should, "collection_id": raw.get("xaiCollectionId")}
    if should and not raw.get("xaiCollectionId"):
        view.problems.append("its rule wants an xAI collection, but xaiCollectionId is empty")


async def bank_view(systems: Systems, view: View) -> None:
    raw = await view.espocrm_record(systems, BANK_FIELDS)
    if raw is None:
        return
    party_id = str(raw.get(PARTY_FK) or "")
    betnr: int | None = None
    party: dict[str, Any] | None = None
    async with view.reading("espocrm"):
        if party_id:
            try:
                party = await systems.espocrm.get_entity(EntityType.BETEILIGTE.value, party_id)
                betnr = int_or_none(party.get("advowareId"))
            except NotFoundError:
                view.problems.append(f"its party {party_id} is not in EspoCRM")
        else:
            view.problems.append("it belongs to no party (beteiligteId is empty)")
    view.counterparts["party"] = ({"entity": EntityRef(OpsEntityType.PARTY, party_id).as_json(), "name": (party or {}).get("name"),
                                   "advowareId": betnr} if party_id else None)
    bank_id = int_or_none(raw.get("advowareId"))
    advo: dict[str, Any] | None = None
    found_by: str | None = None
    async with view.reading("advoware"):
        if betnr is None:
            if party is not None:
                view.problems.append("its party has no Advoware party yet: the account waits for it")
        else:
            accounts = await systems.advoware.list_bank_accounts(betnr)
            if bank_id is not None:
                advo = next((a for a in accounts if int_or_none(a.get(BANK_ID)) == bank_id), None)
                found_by = "advowareId" if advo is not None else None
                if advo is None:
                    view.problems.append(f"Advoware party {betnr}'s bank accounts do not include its account {bank_id}")
            else:
                iban = M.espo_bank_to_canonical(raw)[M.BankField.IBAN.value]
                advo = next((a for a in accounts if M.advoware_bank_to_canonical(a)[M.BankField.IBAN.value] == iban), None)
                found_by = "IBAN" if advo is not None else None
                view.problems.append("it has no Advoware bank account linked (advowareId is empty)" +
                                     (f"; account {advo.get(BANK_ID)} of party {betnr} has its IBAN (resync links it)" if advo else ""))
    view.counterparts["advoware"] = {"betnr": betnr, "advowareId": bank_id, "found_by": found_by, "record": advo}
    await _side_by_side(systems, view, BANK_SIDE, raw, advo, found_by)


async def employee_view(systems: Systems, view: View) -> None:
    kuerzel = view.ref.id
    calendar_id = systems.settings.calendar.mapping.get(kuerzel)
    view.name = kuerzel
    if calendar_id is None:
        view.found = False
        view.problems.append(f"{kuerzel} is not in CALENDAR_MAPPING: no calendar is synced for this employee")
        return
    view.found = True
    doc: Any = None
    status: Any = None
    async with view.reading("state"):
        doc = await systems.state.get(STATE_SCOPE, kuerzel)
        status = await systems.state.get(STATUS_SCOPE, kuerzel)
    emp = EmployeeState.from_state(doc)
    view.counterparts["google"] = {
        "calendar_id": calendar_id, "pairs": len(emp.pairs), "sync_token": emp.sync_token is not None,
        "pending_events": sorted(emp.pending_events)[:PAIRS_SHOWN],
        "sample": [{"frnr": f, "event_id": p.event_id} for f, p in sorted(emp.pairs.items())[:PAIRS_SHOWN]],
    }
    view.counterparts["last_run"] = status if isinstance(status, Mapping) else None
    if not isinstance(status, Mapping):
        view.notes.append("No calendar sync has run for this employee yet.")
        return
    if status.get("result") == "failed":
        view.problems.append(f"its last calendar sync failed ({status.get('consecutive_failures')} time(s) in a row): {status.get('error')}")
    elif status.get("item_errors"):
        view.problems.append(f"its last calendar sync could not apply {len(status['item_errors'])} item(s): "
                             + "; ".join(str(e.get("error") or e) for e in status["item_errors"][:3]))


__all__ = ["BANK_FIELDS", "PARTY_FIELDS", "bank_view", "employee_view", "party_view"]
