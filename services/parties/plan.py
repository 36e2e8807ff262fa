"""What the party and bank-account sync decides: pure functions, no I/O (the executor in
services.parties.executor reads both sides, calls `plan_pair` and `plan_merge`, then applies
the plan). Parties (CBeteiligte ↔ Advoware Beteiligte) and bank accounts
(CBankverbindungen ↔ Bankverbindungen) go through the same planner; what differs between
them is a `Kind` (`PARTY`, `BANK`): canonical form, fields, validation, Advoware id field,
back-reference.

EspoCRM is the hub and keeps the references (`advowareId` on both entities); Advoware keeps
the EspoCRM id of a party in `ExterneId`. Per pair the last synced state (the merged
canonical record, services.parties.mapping) is the *snapshot*; a sync merges both sides
three-way against it, so when both sides equal the snapshot nothing is written - that is
what stops our own writes from ping-ponging.

Rules of `plan_pair` (one EspoCRM record; `linked_id` = its `advowareId`):
- not linked, the EspoCRM record invalid (missing name, bad e-mail/date, bad IBAN
  checksum/BIC) → FAIL with the reasons, nothing written to Advoware;
- the Advoware side not read yet → LOOK_UP (linked: read it by id; not linked: search for a
  record to adopt - a party by `ExterneId`, a bank account of the party with the same IBAN
  that no other EspoCRM record links), then plan again;
- not linked, the Advoware parent missing (a bank account's party) → FAIL;
- not linked, a record found → LINK it (crash recovery: created in Advoware, `advowareId`
  not yet stored); base = the snapshot when it is of that record, else the found record;
- not linked, nothing found → CREATE in Advoware; base = the EspoCRM record (what we send:
  Advoware's own normalisation then flows back once);
- linked, the Advoware record gone → DELETED_IN_ADVOWARE: the EspoCRM record is deleted too
  (Advoware is the system of record for its own data; a party's bank accounts go with it);
- linked → MERGE against the snapshot when it is of this pair, else without a base (every
  differing field then counts as a conflict).

Rules of `plan_merge` (both records at hand):
- the Advoware record's back-reference (`ExterneId`) names another existing EspoCRM record
  → FAIL (it is linked elsewhere);
- three-way merge (`services.parties.mapping.three_way_merge`): a field changed on one side
  is copied to the other; changed on both sides → the conflict rule
  `services.parties.mapping.conflict_winner` (newer modification wins, whole seconds; tie or
  unknown → Advoware), recorded as `syncStatus=conflict` with a note in `syncError`; the note
  stays until the next real change is synced (a run that writes nothing keeps `conflict`);
- the merged record invalid → FAIL, nothing written;
- Advoware is written when a field goes there or its back-reference is not the EspoCRM id;
  EspoCRM when a field goes there, `advowareId` is new, or the status/note differs from
  what it holds (`status_changes`: never the same value twice);
- outcome: CREATED / LINKED when this run created or linked, else CONFLICT, UPDATED, or
  UNCHANGED (nothing to write either way).

`plan_bank_parent`: a bank account follows its party - no party → FAIL; party gone in
EspoCRM → FAIL (and the snapshot dropped); party without `advowareId` → WAIT
(`syncStatus=pending_sync`); the account's snapshot of another party → MOVED (delete it
from the old party, create it anew).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from services.clients.advoware import paths as P
from services.parties import mapping as M
from services.parties.events import BANK_LOCK_STEP, PARTY_LOCK_STEP, TOPIC_BANK, TOPIC_PARTY
from services.parties.state import BANK_SNAPSHOT_SCOPE, PARTY_SNAPSHOT_SCOPE
from services.platform.models import EntityType, SyncStatus

MAX_SYNC_ERROR_LENGTH = 2000
"""syncError notes are cut to this length (the field is expected to be a text field)."""
PARTY_FK = "beteiligteId"
"""CBankverbindungen → its CBeteiligte."""


class SyncOutcome(StrEnum):
    """What one sync run did."""

    CREATED = "created"  # created in Advoware
    LINKED = "linked"  # an existing Advoware record was found and linked (crash recovery)
    UPDATED = "updated"  # changes copied (one or both ways)
    UNCHANGED = "unchanged"  # both sides equal the snapshot: nothing written
    CONFLICT = "conflict"  # changed on both sides; resolved by rule and recorded
    FAILED = "failed"  # invalid data or a permanent Advoware error; recorded in syncError
    WAITING = "waiting_for_party"  # bank account whose party has no advowareId yet
    DELETED_IN_ADVOWARE = "deleted_in_advoware"
    DELETED_IN_ESPOCRM = "deleted_in_espocrm"
    KEPT_IN_ADVOWARE = "kept_in_advoware"  # deleted in EspoCRM, Advoware refused (matters)
    GONE = "gone"  # already absent on both sides
    DELETE_HELD = "delete_held"  # a delete not confirmed, or held by the deletion guard: nothing deleted


# --------------------------------------------------------------------------- the two kinds


def _party_espo_changes(to_espocrm: M.Canonical, merged: M.Canonical) -> dict[str, Any]:
    """A name field going to EspoCRM takes the other along (the display `name` needs both)."""
    if not to_espocrm:
        return {}
    subset = dict(to_espocrm)
    first, last = M.PartyField.FIRST_NAME.value, M.PartyField.LAST_NAME.value
    if first in subset or last in subset:
        subset[first], subset[last] = merged[first], merged[last]
    return M.canonical_party_to_espo(subset)


def _bank_espo_changes(to_espocrm: M.Canonical, merged: M.Canonical) -> dict[str, Any]:
    return M.canonical_bank_to_espo(to_espocrm)


@dataclass(frozen=True)
class Kind:
    """What differs between parties and bank accounts (the executor adds the Advoware calls)."""

    label: str
    """For log lines: "Party", "Bank account"."""
    entity_type: EntityType
    topic: str
    lock_step: str
    snapshot_scope: str
    fields: tuple[str, ...]
    espo_to_canonical: Callable[[Mapping[str, Any]], M.Canonical]
    advoware_to_canonical: Callable[[Mapping[str, Any]], M.Canonical]
    canonical_to_advoware: Callable[[Mapping[str, Any]], dict[str, Any]]
    espo_changes: Callable[[M.Canonical, M.Canonical], dict[str, Any]]
    validate: Callable[[Mapping[str, Any]], list[str]]
    advoware_id_field: str
    advoware_read_only: frozenset[str]
    back_reference: str | None = None
    """Advoware field that holds the EspoCRM id (parties: `ExterneId`)."""

    def advoware_id(self, record: Mapping[str, Any]) -> int | None:
        return int_or_none(record.get(self.advoware_id_field))


PARTY: Final = Kind(
    label="Party",
    entity_type=EntityType.BETEILIGTE,
    topic=TOPIC_PARTY,
    lock_step=PARTY_LOCK_STEP,
    snapshot_scope=PARTY_SNAPSHOT_SCOPE,
    fields=tuple(M.party_fields()),
    espo_to_canonical=M.espo_party_to_canonical,
    advoware_to_canonical=M.advoware_party_to_canonical,
    canonical_to_advoware=M.canonical_party_to_advoware,
    espo_changes=_party_espo_changes,
    validate=M.validate_party,
    advoware_id_field=P.BeteiligterField.BETNR.value,
    advoware_read_only=frozenset(f.value for f in P.BETEILIGTER_READ_ONLY),
    back_reference=P.BeteiligterField.EXTERNE_ID.value,
)
BANK: Final = Kind(
    label="Bank account",
    entity_type=EntityType.BANKVERBINDUNGEN,
    topic=TOPIC_BANK,
    lock_step=BANK_LOCK_STEP,
    snapshot_scope=BANK_SNAPSHOT_SCOPE,
    fields=tuple(M.bank_fields()),
    espo_to_canonical=M.espo_bank_to_canonical,
    advoware_to_canonical=M.advoware_bank_to_canonical,
    canonical_to_advoware=M.canonical_bank_to_advoware,
    espo_changes=_bank_espo_changes,
    validate=M.validate_bank,
    advoware_id_field=P.BankverbindungField.ID.value,
    advoware_read_only=frozenset(f.value for f in P.BANKVERBINDUNG_READ_ONLY),
)


# --------------------------------------------------------------------------- small rules


def int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def same_error(stored: str | None, error: str | None) -> bool:
    """Equal, or `stored` is a (long enough) prefix of `error` - in case EspoCRM's field
    is shorter than our note and cut it: rewriting it every time would ping-pong."""
    if stored == error:
        return True
    return bool(stored and error and len(stored) >= 100 and error.startswith(stored))


def status_changes(
    record: Mapping[str, Any], status: SyncStatus, error: str | None, *, keep_conflict: bool = False
) -> dict[str, Any]:
    """Only the status attributes that differ from the record (empty: nothing to write).
    `keep_conflict`: a record marked `conflict` keeps it (its note stays)."""
    current = record.get("syncStatus")
    if keep_conflict and current == SyncStatus.CONFLICT.value:
        return {}
    out: dict[str, Any] = {}
    if current != status.value:
        out["syncStatus"] = status.value
    if error is not None:
        error = error[:MAX_SYNC_ERROR_LENGTH]
    if not same_error(record.get("syncError") or None, error):
        out["syncError"] = error
    return out


def snapshot_base(snapshot: Mapping[str, Any] | None, advoware_id: int | None) -> M.Canonical | None:
    """The snapshot's fields when it is of the pair with `advoware_id`, else None."""
    if snapshot and int_or_none(snapshot.get("advowareId")) == advoware_id:
        return dict(snapshot["fields"])
    return None


# --------------------------------------------------------------------------- the pair


class Step(StrEnum):
    FAIL = "fail"
    LOOK_UP = "look_up"
    CREATE = "create"
    LINK = "link"
    MERGE = "merge"
    DELETED_IN_ADVOWARE = "deleted_in_advoware"


class _NotRead:
    def __repr__(self) -> str:
        return "NOT_READ"


NOT_READ: Final = _NotRead()
"""`plan_pair(advoware=NOT_READ)`: the Advoware side has not been read yet."""


@dataclass(frozen=True)
class PairPlan:
    step: Step
    advoware_id: int | None = None
    base: M.Canonical | None = None
    reason: str | None = None


def plan_pair(
    kind: Kind,
    espo: Mapping[str, Any],
    snapshot: Mapping[str, Any] | None,
    *,
    advoware: Mapping[str, Any] | None | _NotRead = NOT_READ,
    parent: int | None = None,
    parent_exists: bool = True,
) -> PairPlan:
    """Create, link, merge or delete one EspoCRM record's pair (rules: module docstring).
    `advoware`: the record read by id (linked) or found by the search (not linked), None when
    there is none; `parent`/`parent_exists`: a bank account's party in Advoware."""
    linked_id = int_or_none(espo.get("advowareId"))
    if linked_id is None:
        errors = kind.validate(kind.espo_to_canonical(espo))
        if errors:
            return PairPlan(Step.FAIL, reason="; ".join(errors))
        if isinstance(advoware, _NotRead):
            return PairPlan(Step.LOOK_UP)
        if not parent_exists:
            return PairPlan(Step.FAIL, reason=f"Beteiligter {parent} existiert in Advoware nicht")
        if advoware is None:
            return PairPlan(Step.CREATE, base=kind.espo_to_canonical(espo))
        found_id = kind.advoware_id(advoware)
        base = snapshot_base(snapshot, found_id)
        return PairPlan(Step.LINK, found_id, base if base is not None else kind.advoware_to_canonical(advoware))
    if isinstance(advoware, _NotRead):
        return PairPlan(Step.LOOK_UP, linked_id)
    if advoware is None:
        return PairPlan(Step.DELETED_IN_ADVOWARE, linked_id)
    return PairPlan(Step.MERGE, linked_id, snapshot_base(snapshot, linked_id))


# --------------------------------------------------------------------------- the merge


@dataclass
class MergePlan:
    """The writes that make both sides equal `merge.merged` (or why none may happen)."""

    advoware_id: int
    outcome: SyncOutcome
    reason: str | None = None
    """FAILED: why nothing is written."""
    merge: M.MergeResult | None = None
    advoware_body: dict[str, Any] | None = None
    """The full Advoware record to PUT, or None: nothing to write there."""
    espo_changes: dict[str, Any] = field(default_factory=dict)
    """CBeteiligte/CBankverbindungen attributes to write (without `advowareLastSync`)."""

    @property
    def writes(self) -> bool:
        return bool(self.espo_changes) or self.advoware_body is not None

    @property
    def newly_linked(self) -> bool:
        return "advowareId" in self.espo_changes

    @property
    def conflicts(self) -> list[str]:
        return [c.field for c in self.merge.conflicts] if self.merge else []

    @property
    def note(self) -> str | None:
        return self.merge.conflict_note() if self.merge else None


def plan_merge(
    kind: Kind,
    espo: Mapping[str, Any],
    advoware: Mapping[str, Any],
    base: Mapping[str, Any] | None,
    *,
    owner_elsewhere: str | None = None,
    first: SyncOutcome | None = None,
) -> MergePlan:
    """Merge one pair (rules: module docstring). `owner_elsewhere`: the existing EspoCRM record
    the Advoware back-reference names, when it is not this one; `first`: CREATED or LINKED
    when this run created or linked the Advoware record."""
    espo_id = espo["id"]
    advoware_id = kind.advoware_id(advoware)
    assert advoware_id is not None, "an Advoware record without its id"
    if owner_elsewhere:
        reason = f"Advoware-Beteiligter {advoware_id} ist bereits mit dem EspoCRM-Datensatz {owner_elsewhere} verknüpft"
        return MergePlan(advoware_id, SyncOutcome.FAILED, reason)
    merge = M.three_way_merge(
        base,
        kind.espo_to_canonical(espo),
        kind.advoware_to_canonical(advoware),
        espo_modified=M.espo_modified_at(espo),
        advo_modified=M.advoware_modified_at(advoware),
        fields=list(kind.fields),
    )
    errors = kind.validate(merge.merged)
    if errors:
        return MergePlan(advoware_id, SyncOutcome.FAILED, "; ".join(errors))

    body: dict[str, Any] | None = None
    stale_reference = kind.back_reference is not None and advoware.get(kind.back_reference) != espo_id
    if merge.to_advoware or stale_reference:
        current = {k: v for k, v in advoware.items() if k not in kind.advoware_read_only}
        body = {**current, **kind.canonical_to_advoware(merge.merged)}
        if kind.back_reference is not None:
            body[kind.back_reference] = espo_id

    changes = kind.espo_changes(merge.to_espocrm, merge.merged)
    if int_or_none(espo.get("advowareId")) != advoware_id:
        changes["advowareId"] = advoware_id
    if merge.conflicts:
        changes.update(status_changes(espo, SyncStatus.CONFLICT, merge.conflict_note()))
    else:
        quiet = not (changes or body is not None)
        changes.update(status_changes(espo, SyncStatus.CLEAN, None, keep_conflict=quiet))

    if first is not None:
        outcome = first
    elif merge.conflicts:
        outcome = SyncOutcome.CONFLICT
    elif merge.to_advoware or merge.to_espocrm:
        outcome = SyncOutcome.UPDATED
    else:
        outcome = SyncOutcome.UNCHANGED
    return MergePlan(advoware_id, outcome, merge=merge, advoware_body=body, espo_changes=changes)


# --------------------------------------------------------------------------- a bank account's party


class ParentStep(StrEnum):
    FAIL = "fail"
    DROP_AND_FAIL = "drop_and_fail"
    WAIT = "wait"
    MOVED = "moved"
    OK = "ok"


@dataclass(frozen=True)
class ParentPlan:
    step: ParentStep
    betnr: int | None = None
    reason: str | None = None


def plan_bank_parent(
    bank: Mapping[str, Any],
    party: Mapping[str, Any] | None,
    snapshot: Mapping[str, Any] | None,
) -> ParentPlan:
    """Where a bank account belongs in Advoware (rules: module docstring, last paragraph).
    `party`: the CBeteiligte its `beteiligteId` names (None: gone, or none named)."""
    party_id = bank.get(PARTY_FK)
    if not party_id:
        return ParentPlan(ParentStep.FAIL, reason="keinem Beteiligten zugeordnet (beteiligteId fehlt)")
    if party is None:
        return ParentPlan(ParentStep.DROP_AND_FAIL, reason=f"Beteiligter {party_id} existiert nicht (mehr)")
    betnr = int_or_none(party.get("advowareId"))
    if betnr is None:
        return ParentPlan(ParentStep.WAIT, reason=f"party {party_id} has no advowareId yet")
    old = int_or_none(snapshot.get("betnr")) if snapshot else None
    if int_or_none(bank.get("advowareId")) is not None and old not in (None, betnr):
        return ParentPlan(ParentStep.MOVED, betnr)
    return ParentPlan(ParentStep.OK, betnr)


@dataclass
class SyncResult:
    """What one sync run did, and the events it leaves for the queue."""

    outcome: SyncOutcome
    entity_id: str
    advoware_id: int | None = None
    message: str | None = None
    follow_ups: list[dict[str, Any]] = field(default_factory=list)
    """Queue events (`{"topic", "data"}`) the step should enqueue."""
    conflicts: list[str] = field(default_factory=list)
    """Fields that had changed on both sides (resolved by rule, recorded in syncError)."""

    def log_data(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "entity_id": self.entity_id,
            "advoware_id": self.advoware_id,
            "message": self.message,
            "follow_ups": len(self.follow_ups),
            "conflicts": self.conflicts,
        }
