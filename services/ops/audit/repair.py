"""Repairs of the drift audit's findings, and the one record correction they may make.

Rules:
- A repair is queued work for the sync ledger: the finding's events are marked and enqueued
  (services.platform.ledger.mark_and_enqueue, reviving dead marks: an operator asked), in one
  round trip for all chosen findings, one mark per entity however many findings name it. The
  syncs then read both sides and apply their own rules; deletes happen only there, confirmed by
  a second read and admitted by the deletion guard. Nothing is deleted here.
- RECORD_AND_RESYNC first corrects the document's `xaiCollections` in EspoCRM to what xAI
  holds (`correct_record`: only that field of a CDokumente record, only adding/removing the
  named collections, read just before; a document that is gone is left alone); a finding whose
  correction fails is not queued and reported `failed`.
- Findings without a repair are reported `skipped` with the hint for doing it by hand; ids not
  in the report `unknown`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.clients.errors import IntegrationError, NotFoundError
from services.ops.audit.model import Finding
from services.ops.view import describe
from services.platform.activity import ActivityLog
from services.platform.ledger import Ledger, SyncKind, mark_and_enqueue
from services.platform.models import EntityType

MAX_REPAIRS = 1000
RECORD_FIELD = "xaiCollections"


class RepairStatus(StrEnum):
    QUEUED = "queued"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass
class RepairOutcome:
    finding_id: str
    status: RepairStatus
    detail: str
    marks: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"finding_id": self.finding_id, "status": self.status.value, "detail": self.detail, "marks": self.marks}


def record_correction(doc_id: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> dict[str, Any]:
    """The `record` of a RECORD_AND_RESYNC repair: these collections added to / removed from the
    document's `xaiCollections` (what `correct_record` applies)."""
    return {"entity_type": EntityType.DOKUMENTE.value, "entity_id": doc_id, "field": RECORD_FIELD, "add": list(add), "remove": list(remove)}


async def correct_record(espocrm: Any, record: Mapping[str, Any]) -> str | None:
    """Apply a RECORD_AND_RESYNC correction (module docstring); returns what changed, or None."""
    if record.get("entity_type") != EntityType.DOKUMENTE.value or record.get("field") != RECORD_FIELD:
        raise ValueError(f"a repair may only correct {EntityType.DOKUMENTE.value}.{RECORD_FIELD}, not {record!r}")
    doc_id = str(record["entity_id"])
    try:
        doc = await espocrm.get_entity(EntityType.DOKUMENTE.value, doc_id)
    except NotFoundError:
        return None
    current = [str(c) for c in doc.get(RECORD_FIELD) or []]
    remove = {str(c) for c in record.get("remove") or []}
    new = [c for c in current if c not in remove] + [str(c) for c in record.get("add") or [] if str(c) not in current]
    if new == current:
        return None
    await espocrm.update_entity(EntityType.DOKUMENTE.value, doc_id, {RECORD_FIELD: new})
    return f"{RECORD_FIELD} of document {doc_id}: {current} → {new}"


async def repair_findings(findings: Iterable[Finding], *, espocrm: Any, ledger: Ledger, ctx: Any,
                          activity: ActivityLog | None = None, why: str = "ops repair") -> list[RepairOutcome]:
    """Queue the repairs of `findings` (rules: module docstring). Raises LedgerError when Redis
    cannot record the marks (nothing was enqueued then)."""
    outcomes: dict[str, RepairOutcome] = {}
    queued: list[tuple[Finding, list[tuple[SyncKind, str]]]] = []
    unique: dict[tuple[SyncKind, str], dict[str, Any]] = {}
    for f in findings:
        if f.repair is None:
            outcomes[f.id] = RepairOutcome(f.id, RepairStatus.SKIPPED, f"no automatic repair: {f.hint or f.why}")
            continue
        detail = f.repair.description
        if f.repair.record:
            try:
                changed = await correct_record(espocrm, f.repair.record)
            except (IntegrationError, ValueError) as exc:
                outcomes[f.id] = RepairOutcome(f.id, RepairStatus.FAILED, f"record not corrected, nothing queued: {describe(exc)}")
                continue
            detail = f"{changed}; {detail}" if changed else detail
        outcomes[f.id] = RepairOutcome(f.id, RepairStatus.QUEUED, detail)
        keys = [ledger.describe(event) for event in f.repair.events]
        unique.update(zip(keys, f.repair.events, strict=True))
        queued.append((f, list(dict.fromkeys(keys))))
    marks = await mark_and_enqueue(ledger, ctx, list(unique.values()))
    by_key = {(m.kind, m.entity_id): {"kind": m.kind.value, "entity_id": m.entity_id, "seq": m.seq, "outcome": m.outcome.value}
              for m in marks}
    for f, keys in queued:
        outcome = outcomes[f.id]
        outcome.marks = [by_key[k] for k in keys if k in by_key]
        if activity is not None:
            for mark in outcome.marks:
                await activity.add(f"{mark['kind']}:{mark['entity_id']}", "info", f"{why}: {f.type.value}: {outcome.detail}",
                                   {"finding_id": f.id}, trace_id=getattr(ctx, "trace_id", None))
    return list(outcomes.values())


__all__ = ["MAX_REPAIRS", "RECORD_FIELD", "RepairOutcome", "RepairStatus", "correct_record", "record_correction", "repair_findings"]
