"""The pure party / bank-account planner (services.parties.plan), one case per rule of its
docstring, for both kinds where the rule is generic. No I/O: records in, a plan out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from services.parties import plan as PL
from services.parties.plan import BANK, NOT_READ, PARTY, Kind, ParentStep, Step, SyncOutcome

E_OLD, E_NEW = "2026-03-01 10:00:00", "2026-03-01 12:00:00"
A_OLD, A_NEW = "2026-03-01T10:00:00Z", "2026-03-01T12:00:00Z"
IBAN = "DE89370400440532013000"


def espo_party(**kw: Any) -> dict[str, Any]:
    rec = {"id": "e1", "firstName": "Anna", "lastName": "Muster", "emailAddress": "anna@example.de", "modifiedAt": E_OLD}
    rec.update(kw)
    return rec


def advo_party(**kw: Any) -> dict[str, Any]:
    rec = {"BetNr": 7, "Vorname": "Anna", "Name": "Muster", "Email": "anna@example.de", "ExterneId": "e1", "GeaendertAm": A_OLD}
    rec.update(kw)
    return rec


def espo_bank(**kw: Any) -> dict[str, Any]:
    rec = {"id": "b1", "iban": IBAN, "bic": "COBADEFFXXX", "bankName": "Bank", "kontoinhaber": "Anna", "modifiedAt": E_OLD}
    rec.update(kw)
    return rec


def advo_bank(**kw: Any) -> dict[str, Any]:
    rec = {"Id": 70, "IBAN": IBAN, "BIC": "COBADEFFXXX", "Bank": "Bank", "Kontoinhaber": "Anna", "GeaendertAm": A_OLD}
    rec.update(kw)
    return rec


RECORDS = {"party": (PARTY, espo_party, advo_party), "bank": (BANK, espo_bank, advo_bank)}


def snapshot_of(kind: Kind, espo: dict[str, Any], advoware_id: int) -> dict[str, Any]:
    return {"espoId": espo["id"], "advowareId": advoware_id, "fields": kind.espo_to_canonical(espo)}


# --------------------------------------------------------------------------- plan_pair


@dataclass
class PairCase:
    name: str
    kinds: tuple[str, ...]
    espo: dict[str, Any]
    """Overrides of the EspoCRM record."""
    advoware: dict[str, Any] | None | Any = NOT_READ
    """Overrides of the Advoware record (dict), None (none), NOT_READ."""
    snapshot: str | None = None
    """None, "same" (of the Advoware record at hand) or "other" (of another Advoware id)."""
    parent_exists: bool = True
    step: Step = Step.MERGE
    advoware_id: int | None = None
    base: str | None = None
    """Expected base: None, "snapshot", "espo" or "advoware"."""
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


BAD = {"party": {"lastName": None, "emailAddress": "nope"}, "bank": {"iban": "DE00 1234"}}
PAIR_CASES = [
    PairCase("unlinked, invalid → FAIL, nothing looked up", ("party", "bank"), {"invalid": True}, step=Step.FAIL, reason="ungültig"),
    PairCase("unlinked, valid, not searched yet → LOOK_UP", ("party", "bank"), {}, step=Step.LOOK_UP),
    PairCase("linked, not read yet → LOOK_UP by id", ("party", "bank"), {"linked": True}, step=Step.LOOK_UP, advoware_id=-1),
    PairCase(
        "unlinked, the parent missing in Advoware → FAIL",
        ("bank",),
        {},
        advoware=None,
        parent_exists=False,
        step=Step.FAIL,
        reason="Beteiligter 5 existiert in Advoware nicht",
    ),
    PairCase("unlinked, nothing found → CREATE from EspoCRM", ("party", "bank"), {}, advoware=None, step=Step.CREATE, base="espo"),
    PairCase("unlinked, found → LINK, base = the found record", ("party", "bank"), {}, advoware={}, step=Step.LINK, advoware_id=-1, base="advoware"),
    PairCase(
        "unlinked, found, snapshot of that record → LINK on the snapshot",
        ("party", "bank"),
        {},
        advoware={},
        snapshot="same",
        step=Step.LINK,
        advoware_id=-1,
        base="snapshot",
    ),
    PairCase("linked, Advoware record gone → DELETED_IN_ADVOWARE", ("party", "bank"), {"linked": True}, advoware=None, step=Step.DELETED_IN_ADVOWARE, advoware_id=-1),
    PairCase("linked → MERGE on the snapshot of this pair", ("party", "bank"), {"linked": True}, advoware={}, snapshot="same", advoware_id=-1, base="snapshot"),
    PairCase("linked, snapshot of another pair → MERGE without a base", ("party", "bank"), {"linked": True}, advoware={}, snapshot="other", advoware_id=-1),
]


@pytest.mark.parametrize(
    ("kind_name", "case"),
    [(k, c) for c in PAIR_CASES for k in c.kinds],
    ids=[f"{k}: {c.name}" for c in PAIR_CASES for k in c.kinds],
)
def test_plan_pair(kind_name: str, case: PairCase) -> None:
    kind, make_espo, make_advo = RECORDS[kind_name]
    advo_record = make_advo()
    advo_id = kind.advoware_id(advo_record)
    assert advo_id is not None
    overrides = dict(case.espo)
    if overrides.pop("invalid", False):
        overrides.update(BAD[kind_name])
    if overrides.pop("linked", False):
        overrides["advowareId"] = advo_id
    espo = make_espo(**overrides)
    advoware: Any = case.advoware if not isinstance(case.advoware, dict) else make_advo(**case.advoware)
    snapshot = None
    if case.snapshot == "same":
        snapshot = snapshot_of(kind, make_espo(emailAddress="old@example.de", kontoinhaber="Alt"), advo_id)
    elif case.snapshot == "other":
        snapshot = snapshot_of(kind, make_espo(), advo_id + 1)

    p = PL.plan_pair(kind, espo, snapshot, advoware=advoware, parent=5, parent_exists=case.parent_exists)

    assert p.step is case.step
    assert p.advoware_id == (advo_id if case.advoware_id == -1 else case.advoware_id)
    expected_base = {
        None: None,
        "snapshot": snapshot["fields"] if snapshot else None,
        "espo": kind.espo_to_canonical(espo),
        "advoware": kind.advoware_to_canonical(advo_record),
    }[case.base]
    assert p.base == expected_base
    if case.reason == "ungültig":
        assert p.reason and p.reason == "; ".join(kind.validate(kind.espo_to_canonical(espo)))
    else:
        assert p.reason == case.reason


# --------------------------------------------------------------------------- plan_merge


@dataclass
class MergeCase:
    name: str
    kinds: tuple[str, ...]
    espo: dict[str, Any]
    advoware: dict[str, Any]
    base_espo: dict[str, Any] | None = field(default_factory=dict)
    """Overrides of the EspoCRM record the snapshot was taken of; None: no snapshot."""
    owner_elsewhere: str | None = None
    first: SyncOutcome | None = None
    outcome: SyncOutcome = SyncOutcome.UNCHANGED
    to_advoware: dict[str, Any] = field(default_factory=dict)
    """Advoware fields the PUT body must carry (None body when empty and `advoware_write` False)."""
    advoware_write: bool = False
    espo_changes: dict[str, Any] = field(default_factory=dict)
    reason_has: str | None = None


LINKED = {"advowareId": 7}
LINKED_B = {"advowareId": 70}
MERGE_CASES = [
    MergeCase(
        "back-reference names another existing record → FAILED",
        ("party",),
        LINKED,
        {"ExterneId": "e9"},
        owner_elsewhere="e9",
        outcome=SyncOutcome.FAILED,
        reason_has="bereits mit dem EspoCRM-Datensatz e9 verknüpft",
    ),
    MergeCase("nothing changed → UNCHANGED, nothing written", ("party",), {**LINKED, "syncStatus": "clean"}, {}),
    MergeCase("nothing changed → UNCHANGED, nothing written", ("bank",), {**LINKED_B, "syncStatus": "clean"}, {}),
    MergeCase(
        "changed in EspoCRM only → copied to Advoware",
        ("party",),
        {**LINKED, "syncStatus": "clean", "emailAddress": "neu@example.de"},
        {},
        outcome=SyncOutcome.UPDATED,
        to_advoware={"Email": "neu@example.de", "ExterneId": "e1"},
        advoware_write=True,
    ),
    MergeCase(
        "changed in EspoCRM only → copied to Advoware",
        ("bank",),
        {**LINKED_B, "syncStatus": "clean", "kontoinhaber": "Bert"},
        {},
        outcome=SyncOutcome.UPDATED,
        to_advoware={"Kontoinhaber": "Bert", "IBAN": IBAN},
        advoware_write=True,
    ),
    MergeCase(
        "changed in Advoware only → copied to EspoCRM (both names and the display name)",
        ("party",),
        {**LINKED, "syncStatus": "clean"},
        {"Name": "Neumann"},
        outcome=SyncOutcome.UPDATED,
        espo_changes={"firstName": "Anna", "lastName": "Neumann", "name": "Anna Neumann"},
    ),
    MergeCase(
        "changed in Advoware only → copied to EspoCRM",
        ("bank",),
        {**LINKED_B, "syncStatus": "clean"},
        {"Bank": "Andere Bank"},
        outcome=SyncOutcome.UPDATED,
        espo_changes={"bankName": "Andere Bank"},
    ),
    MergeCase(
        "changed on both sides, EspoCRM newer → EspoCRM wins, recorded as conflict",
        ("party",),
        {**LINKED, "syncStatus": "clean", "emailAddress": "e@example.de", "modifiedAt": E_NEW},
        {"Email": "a@example.de", "GeaendertAm": A_OLD},
        outcome=SyncOutcome.CONFLICT,
        to_advoware={"Email": "e@example.de"},
        advoware_write=True,
        espo_changes={"syncStatus": "conflict"},
        reason_has="Gewinner: espocrm",
    ),
    MergeCase(
        "changed on both sides at the same second → Advoware wins, recorded as conflict",
        ("bank",),
        {**LINKED_B, "syncStatus": "clean", "kontoinhaber": "Espo", "modifiedAt": "2026-03-01 10:00:00"},
        {"Kontoinhaber": "Advo", "GeaendertAm": "2026-03-01T10:00:00.400Z"},
        outcome=SyncOutcome.CONFLICT,
        espo_changes={"kontoinhaber": "Advo", "syncStatus": "conflict"},
        reason_has="Gewinner: advoware",
    ),
    MergeCase(
        "no snapshot: every differing field is a conflict (newer wins)",
        ("party",),
        {**LINKED, "syncStatus": "clean", "phoneNumber": "1"},
        {"Telefon": "2", "GeaendertAm": A_NEW},
        base_espo=None,
        outcome=SyncOutcome.CONFLICT,
        espo_changes={"phoneNumber": "2", "syncStatus": "conflict"},
        reason_has="Gewinner: advoware",
    ),
    MergeCase(
        "the merged record invalid → FAILED, nothing written",
        ("party",),
        {**LINKED, "emailAddress": "kaputt"},
        {},
        outcome=SyncOutcome.FAILED,
        reason_has="ungültige E-Mail-Adresse",
    ),
    MergeCase(
        "the merged record invalid → FAILED, nothing written",
        ("bank",),
        {**LINKED_B, "iban": "DE00123"},
        {},
        outcome=SyncOutcome.FAILED,
        reason_has="ungültige IBAN",
    ),
    MergeCase(
        "back-reference not the EspoCRM id → Advoware written, no field change",
        ("party",),
        {**LINKED, "syncStatus": "clean"},
        {"ExterneId": None},
        advoware_write=True,
        to_advoware={"ExterneId": "e1", "Name": "Muster"},
    ),
    MergeCase(
        "a quiet run keeps `conflict` and its note",
        ("party",),
        {**LINKED, "syncStatus": "conflict", "syncError": "Konflikt …"},
        {},
    ),
    MergeCase(
        "a run that writes clears `conflict`",
        ("party",),
        {**LINKED, "syncStatus": "conflict", "syncError": "Konflikt …"},
        {"Telefon": "99"},
        outcome=SyncOutcome.UPDATED,
        espo_changes={"phoneNumber": "99", "syncStatus": "clean", "syncError": None},
    ),
    MergeCase(
        "advowareId not yet in EspoCRM → stored; first = LINKED is the outcome",
        ("party",),
        {"syncStatus": "pending_sync"},
        {},
        first=SyncOutcome.LINKED,
        outcome=SyncOutcome.LINKED,
        espo_changes={"advowareId": 7, "syncStatus": "clean"},
    ),
    MergeCase(
        "created this run → CREATED, advowareId stored",
        ("bank",),
        {"syncStatus": "pending_sync"},
        {},
        first=SyncOutcome.CREATED,
        outcome=SyncOutcome.CREATED,
        espo_changes={"advowareId": 70, "syncStatus": "clean"},
    ),
]


@pytest.mark.parametrize(
    ("kind_name", "case"),
    [(k, c) for c in MERGE_CASES for k in c.kinds],
    ids=[f"{k}: {c.name}" for c in MERGE_CASES for k in c.kinds],
)
def test_plan_merge(kind_name: str, case: MergeCase) -> None:
    kind, make_espo, make_advo = RECORDS[kind_name]
    espo, advo = make_espo(**case.espo), make_advo(**case.advoware)
    base = kind.espo_to_canonical(make_espo(**case.base_espo)) if case.base_espo is not None else None

    mp = PL.plan_merge(kind, espo, advo, base, owner_elsewhere=case.owner_elsewhere, first=case.first)

    assert mp.outcome is case.outcome
    assert mp.advoware_id == kind.advoware_id(advo)
    if case.outcome is SyncOutcome.FAILED:
        assert case.reason_has and mp.reason and case.reason_has in mp.reason
        assert not mp.writes
        return
    if case.advoware_write:
        assert mp.advoware_body is not None
        assert {k: mp.advoware_body.get(k) for k in case.to_advoware} == case.to_advoware
        assert not set(mp.advoware_body) & kind.advoware_read_only, "read-only fields are not sent"
    else:
        assert mp.advoware_body is None
    changes = dict(mp.espo_changes)
    if "syncError" in changes and "syncError" not in case.espo_changes:
        assert case.reason_has and case.reason_has in (changes.pop("syncError") or "")
    assert changes == case.espo_changes
    assert mp.newly_linked is ("advowareId" in case.espo_changes)
    assert mp.writes is bool(case.espo_changes or case.advoware_write)
    if case.outcome is SyncOutcome.CONFLICT:
        assert mp.conflicts and mp.note and case.reason_has and case.reason_has in mp.note


# --------------------------------------------------------------------------- a bank account's party


@pytest.mark.parametrize(
    ("bank", "party", "snapshot", "step", "betnr", "reason_has"),
    [
        ({}, None, None, ParentStep.FAIL, None, "beteiligteId fehlt"),
        ({"beteiligteId": "p1"}, None, None, ParentStep.DROP_AND_FAIL, None, "Beteiligter p1 existiert nicht"),
        ({"beteiligteId": "p1"}, {"id": "p1"}, None, ParentStep.WAIT, None, "no advowareId yet"),
        ({"beteiligteId": "p1", "advowareId": 70}, {"id": "p1", "advowareId": 5}, {"betnr": 4}, ParentStep.MOVED, 5, None),
        ({"beteiligteId": "p1", "advowareId": 70}, {"id": "p1", "advowareId": 5}, {"betnr": 5}, ParentStep.OK, 5, None),
        ({"beteiligteId": "p1"}, {"id": "p1", "advowareId": "5"}, {"betnr": 4}, ParentStep.OK, 5, None),
    ],
    ids=["no party", "party gone", "party not synced yet", "moved to another party", "same party", "unlinked account never moves"],
)
def test_plan_bank_parent(
    bank: dict[str, Any], party: dict[str, Any] | None, snapshot: dict[str, Any] | None, step: ParentStep, betnr: int | None, reason_has: str | None
) -> None:
    p = PL.plan_bank_parent(espo_bank(**bank), party, snapshot)
    assert p.step is step and p.betnr == betnr
    assert (reason_has in (p.reason or "")) if reason_has else p.reason is None


# --------------------------------------------------------------------------- status writes


@pytest.mark.parametrize(
    ("record", "status", "error", "keep", "expected"),
    [
        ({"syncStatus": "clean"}, "clean", None, False, {}),
        ({"syncStatus": "failed", "syncError": "x"}, "clean", None, False, {"syncStatus": "clean", "syncError": None}),
        ({"syncStatus": "conflict", "syncError": "note"}, "clean", None, True, {}),
        ({"syncStatus": "failed", "syncError": "a" * 100}, "failed", "a" * 150, False, {}),
        ({}, "failed", "b" * 3000, False, {"syncStatus": "failed", "syncError": "b" * PL.MAX_SYNC_ERROR_LENGTH}),
    ],
    ids=["same status: nothing", "clears the note", "a quiet run keeps conflict", "a cut-short note is the same", "notes are cut"],
)
def test_status_changes_never_write_the_same_value_twice(
    record: dict[str, Any], status: str, error: str | None, keep: bool, expected: dict[str, Any]
) -> None:
    assert PL.status_changes(record, PL.SyncStatus(status), error, keep_conflict=keep) == expected

