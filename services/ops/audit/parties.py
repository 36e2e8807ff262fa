"""The drift audit's rules for parties (CBeteiligte ↔ Advoware Beteiligte) and bank accounts
(CBankverbindungen ↔ Bankverbindungen): pure functions over fetched pages, no I/O.

Both sides are compared in the sync's canonical form (services.parties.mapping), field by
field; the last synced snapshot, when given, says on which side a field changed. Entities with
a live ledger mark (a sync pending or running) are left out: they are about to change.

Parties (`party_findings`):
- linked (`advowareId`), Advoware's record at hand, a synced field or its back-reference
  (`ExterneId`) differs → PARTY_DIFFERS; the repair queues the party's sync (three-way merge:
  a field changed on one side is copied, on both the newer change wins; services.parties.plan).
- linked, Advoware answers 404 for it and does not list it (`gone`, confirmed by the executor)
  → PARTY_COUNTERPART_MISSING; the sync re-checks and deletes the EspoCRM record only under the
  deletion guard (or links a record found by `ExterneId` instead).
- not linked (and not waiting: `syncStatus` is not `pending_sync`) → PARTY_COUNTERPART_MISSING;
  the sync creates it in Advoware or links the one whose `ExterneId` names it.
- an Advoware party whose `ExterneId` names an EspoCRM party EspoCRM does not list (complete
  listing only), not kept because matters use it, and linked by no EspoCRM record →
  PARTY_COUNTERPART_MISSING; the sync confirms the delete (404, not listed) and deletes it in
  Advoware under the deletion guard, or keeps it when matters use it.

Bank accounts (`bank_findings`), with their party's BetNr and that party's Advoware accounts:
- linked, the account in the list, a synced field differs → BANK_ACCOUNT_DIFFERS;
- linked, the party's list answered without it → BANK_ACCOUNT_COUNTERPART_MISSING (the sync
  lists again and searches by IBAN before anything is deleted, under the guard);
- not linked and not waiting → BANK_ACCOUNT_COUNTERPART_MISSING (the sync creates or links it).
Accounts whose party is not linked, or whose party's list was not read, are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services.clients.advoware import paths as P
from services.ops.audit.model import Finding, FindingType, Repair, RepairAction
from services.ops.entities import EntityRef, OpsEntityType
from services.parties import mapping as M
from services.parties.events import TOPIC_BANK, TOPIC_PARTY, sync_event
from services.parties.plan import PARTY_FK, int_or_none
from services.platform.models import EntityAction, SyncSource, SyncStatus

PARTY_SELECT = ("id", "name", "advowareId", "syncStatus", "syncError", "modifiedAt", *M.party_fields())
BANK_SELECT = ("id", "name", "advowareId", PARTY_FK, "syncStatus", "syncError", "modifiedAt", *M.bank_fields())
BETNR = P.BeteiligterField.BETNR.value
EXTERNE_ID = P.BeteiligterField.EXTERNE_ID.value
BANK_ID = P.BankverbindungField.ID.value


def field_diffs(espo: Mapping[str, Any], advo: Mapping[str, Any], fields: Iterable[str],
                snapshot: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Canonical values that differ: `{field: {espocrm, advoware, snapshot?, changed_in}}`;
    `changed_in` is the side that moved away from the snapshot (`both`, or `unknown` without one)."""
    out: dict[str, dict[str, Any]] = {}
    for name in fields:
        e, a = espo.get(name), advo.get(name)
        if e == a:
            continue
        row: dict[str, Any] = {"espocrm": e, "advoware": a}
        if snapshot is not None:
            s = snapshot.get(name)
            row["snapshot"] = s
            row["changed_in"] = "advoware" if e == s else "espocrm" if a == s else "both"
        else:
            row["changed_in"] = "unknown"
        out[name] = row
    return out


def party_diffs(espo_record: Mapping[str, Any], advo_record: Mapping[str, Any],
                snapshot: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return field_diffs(M.espo_party_to_canonical(espo_record), M.advoware_party_to_canonical(advo_record), M.party_fields(), snapshot)


def bank_diffs(espo_record: Mapping[str, Any], advo_record: Mapping[str, Any],
               snapshot: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return field_diffs(M.espo_bank_to_canonical(espo_record), M.advoware_bank_to_canonical(advo_record), M.bank_fields(), snapshot)


def _resync(base: str, espo_id: str, why: str, action: EntityAction = EntityAction.UPDATE) -> Repair:
    what = "party" if base == TOPIC_PARTY else "bank account"
    return Repair(RepairAction.RESYNC, f"queue the {what}'s sync ({base}.{action.value}) through the ledger",
                  (sync_event(base, espo_id, action, SyncSource.MANUAL, f"ops audit: {why}"),))


def _words(diffs: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(f"{k}: EspoCRM {v['espocrm']!r}, Advoware {v['advoware']!r}" for k, v in diffs.items())


def _sides(diffs: Mapping[str, Mapping[str, Any]]) -> str:
    sides = sorted({str(v["changed_in"]) for v in diffs.values()})
    if sides == ["unknown"]:
        return "no snapshot of the last sync says which side changed"
    return "changed in " + " and ".join(sides) + " since the last sync"


def _label(kind: str, record: Mapping[str, Any]) -> str:
    name = record.get("name")
    return f"{kind} {record.get('id')}" + (f" \"{name}\"" if name else "")


def unlisted_betnrs(espo_parties: Iterable[Mapping[str, Any]], advo_by_betnr: Mapping[int, Any], busy: set[str]) -> list[int]:
    """Linked BetNrs Advoware's list did not return (the executor reads them one by one)."""
    out = {b for p in espo_parties if str(p.get("id")) not in busy
           for b in [int_or_none(p.get("advowareId"))] if b is not None and b not in advo_by_betnr}
    return sorted(out)


def party_findings(espo_parties: Iterable[Mapping[str, Any]], advo_by_betnr: Mapping[int, Mapping[str, Any]], *,
                   gone: set[int], busy: set[str], snapshots: Mapping[str, Mapping[str, Any]] | None = None,
                   espocrm_complete: bool = False, kept: set[int] | None = None) -> list[Finding]:
    """PARTY_DIFFERS and PARTY_COUNTERPART_MISSING (rules: module docstring). `advo_by_betnr` holds
    every Advoware party read (listed or fetched), `gone` the BetNrs confirmed missing."""
    parties = [p for p in espo_parties if p.get("id")]
    snaps = snapshots or {}
    by_external: dict[str, Mapping[str, Any]] = {}
    for rec in advo_by_betnr.values():
        if rec.get(EXTERNE_ID):
            by_external.setdefault(str(rec[EXTERNE_ID]), rec)
    out: list[Finding] = []
    for p in parties:
        espo_id = str(p["id"])
        if espo_id in busy:
            continue
        ref = EntityRef(OpsEntityType.PARTY, espo_id)
        betnr = int_or_none(p.get("advowareId"))
        if betnr is None:
            if p.get("syncStatus") == SyncStatus.PENDING_SYNC.value:
                continue
            found = by_external.get(espo_id)
            why = (f"Advoware party {found.get(BETNR)} names it (ExterneId): created there, its BetNr never stored; the sync links it"
                   if found else "the sync never created it in Advoware" + (f" ({p.get('syncError')})" if p.get("syncError") else ""))
            out.append(Finding(FindingType.PARTY_COUNTERPART_MISSING, _label("party", p), "it has no Advoware party (advowareId is empty).",
                               why, "unlinked", ref, {"side": "advoware", "syncStatus": p.get("syncStatus"), "syncError": p.get("syncError"),
                                                      "found_by_externe_id": found.get(BETNR) if found else None},
                               _resync(TOPIC_PARTY, espo_id, "no Advoware party")))
            continue
        if betnr in gone:
            out.append(Finding(FindingType.PARTY_COUNTERPART_MISSING, _label("party", p),
                               f"Advoware answers 404 for its party {betnr} and does not list it.",
                               "the party was deleted in Advoware (or renumbered); the sync re-checks, links a party whose ExterneId names "
                               "it, or deletes the EspoCRM record under the deletion guard",
                               f"gone:{betnr}", ref, {"side": "advoware", "advowareId": betnr}, _resync(TOPIC_PARTY, espo_id, "Advoware party gone")))
            continue
        advo = advo_by_betnr.get(betnr)
        if advo is None:
            continue
        snap = snaps.get(espo_id)
        diffs = party_diffs(p, advo, (snap or {}).get("fields") if snap and int_or_none(snap.get("advowareId")) == betnr else None)
        back = str(advo.get(EXTERNE_ID) or "")
        if not diffs and back == espo_id:
            continue
        summary = f"{len(diffs)} synced field(s) differ from Advoware party {betnr}: {_words(diffs)}." if diffs else ""
        if back != espo_id:
            summary += f" Advoware's ExterneId is {back or 'empty'!r}, not this party."
        why = (_sides(diffs) if diffs else "the back-reference was changed in Advoware") + (
            f"; the record says {p.get('syncStatus')}: {p.get('syncError')}" if p.get("syncError") else "")
        out.append(Finding(FindingType.PARTY_DIFFERS, _label("party", p), summary.strip(), why,
                           f"{betnr}:" + ",".join(sorted(diffs)), ref,
                           {"advowareId": betnr, "fields": diffs, "externe_id": back or None, "syncStatus": p.get("syncStatus")},
                           _resync(TOPIC_PARTY, espo_id, "fields differ")))
    if espocrm_complete:
        known = {str(p["id"]) for p in parties}
        linked = {b for p in parties for b in [int_or_none(p.get("advowareId"))] if b is not None}
        for external, rec in sorted(by_external.items()):
            betnr = int_or_none(rec.get(BETNR))
            if external in known or betnr is None or betnr in linked or betnr in (kept or set()) or external in busy:
                continue
            out.append(Finding(
                FindingType.PARTY_COUNTERPART_MISSING, f"Advoware party {betnr} \"{rec.get('Name') or ''}\"",
                f"its ExterneId names EspoCRM party {external}, which EspoCRM does not list.",
                "the EspoCRM record was deleted and the delete never reached the sync; the sync confirms it (404, not listed) and "
                "deletes the Advoware party under the deletion guard, or keeps it when matters use it",
                f"orphan:{betnr}", EntityRef(OpsEntityType.PARTY, external), {"side": "espocrm", "advowareId": betnr},
                _resync(TOPIC_PARTY, external, "EspoCRM party gone", EntityAction.DELETE)))
    return out


def bank_findings(espo_banks: Iterable[Mapping[str, Any]], party_betnr: Mapping[str, int | None],
                  advo_accounts: Mapping[int, Sequence[Mapping[str, Any]]], *, busy: set[str],
                  snapshots: Mapping[str, Mapping[str, Any]] | None = None) -> list[Finding]:
    """BANK_ACCOUNT_DIFFERS and BANK_ACCOUNT_COUNTERPART_MISSING (rules: module docstring).
    `party_betnr` maps a CBeteiligte id to its BetNr; `advo_accounts` a BetNr whose list was read
    to its accounts."""
    snaps = snapshots or {}
    out: list[Finding] = []
    for b in espo_banks:
        espo_id = str(b.get("id") or "")
        if not espo_id or espo_id in busy:
            continue
        ref = EntityRef(OpsEntityType.BANK_ACCOUNT, espo_id)
        bank_id = int_or_none(b.get("advowareId"))
        betnr = party_betnr.get(str(b.get(PARTY_FK) or ""))
        if bank_id is None:
            if b.get("syncStatus") == SyncStatus.PENDING_SYNC.value or betnr is None:
                continue
            out.append(Finding(FindingType.BANK_ACCOUNT_COUNTERPART_MISSING, _label("bank account", b),
                               f"it has no Advoware bank account (advowareId is empty) although its party is Advoware party {betnr}.",
                               "the sync never created it" + (f" ({b.get('syncError')})" if b.get("syncError") else "") + "; the sync creates it "
                               "or links an account of the party with the same IBAN", "unlinked", ref,
                               {"side": "advoware", "betnr": betnr, "syncStatus": b.get("syncStatus")},
                               _resync(TOPIC_BANK, espo_id, "no Advoware bank account")))
            continue
        if betnr is None or betnr not in advo_accounts:
            continue
        advo = next((a for a in advo_accounts[betnr] if int_or_none(a.get(BANK_ID)) == bank_id), None)
        if advo is None:
            out.append(Finding(FindingType.BANK_ACCOUNT_COUNTERPART_MISSING, _label("bank account", b),
                               f"Advoware party {betnr}'s bank accounts do not include its account {bank_id}.",
                               "the account was deleted in Advoware; the sync lists again and searches by IBAN, then deletes the EspoCRM "
                               "record under the deletion guard", f"gone:{bank_id}", ref, {"side": "advoware", "betnr": betnr, "advowareId": bank_id},
                               _resync(TOPIC_BANK, espo_id, "Advoware bank account gone")))
            continue
        snap = snaps.get(espo_id)
        diffs = bank_diffs(b, advo, (snap or {}).get("fields") if snap and int_or_none(snap.get("advowareId")) == bank_id else None)
        if diffs:
            out.append(Finding(FindingType.BANK_ACCOUNT_DIFFERS, _label("bank account", b),
                               f"{len(diffs)} synced field(s) differ from Advoware account {bank_id} of party {betnr}: {_words(diffs)}.",
                               _sides(diffs), f"{bank_id}:" + ",".join(sorted(diffs)), ref,
                               {"advowareId": bank_id, "betnr": betnr, "fields": diffs}, _resync(TOPIC_BANK, espo_id, "fields differ")))
    return out


__all__ = ["BANK_SELECT", "PARTY_SELECT", "bank_diffs", "bank_findings", "field_diffs", "party_diffs", "party_findings", "unlisted_betnrs"]
