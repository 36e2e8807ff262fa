"""What the drift audit reports: findings (what disagrees, why, how to repair it), the checks it
ran (complete or cut short by its budget) and the report, as JSON and in words.

A finding's `id` is stable for the same disagreement (a hash of its type, subject and key), so
`POST /ops/audit/repair {"ids": [...]}` can name findings of the last report. A repair is only
ever work for the sync ledger (`events`, marked and enqueued), optionally preceded by a
correction of the sync's own record of the other side (`record`: the document's
`xaiCollections`, never anything else), so every fix runs through the syncs' own rules and the
deletion guard.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from services.ops.entities import EntityRef, parse_ref


class FindingType(StrEnum):
    """Every kind of disagreement the audit looks for (one test each in tests/services/ops/)."""

    DOCUMENT_NOT_IN_COLLECTION = "document_not_in_collection"
    """EspoCRM marks the document clean, but a collection it belongs in lacks its file."""
    FILE_WITHOUT_DOCUMENT = "file_without_document"
    """A collection holds a file whose document is gone, unlinked from the owner, or older."""
    COLLECTION_WITHOUT_OWNER = "collection_without_owner"
    """An xAI collection no EspoCRM entity owns (owner gone, another collection kept, no metadata)."""
    ENTITY_WITHOUT_COLLECTION = "entity_without_collection"
    """An entity whose rule wants a collection has none (or its stored one is gone from xAI)."""
    PARTY_DIFFERS = "party_differs"
    """A linked party's synced fields (or its ExterneId) differ between EspoCRM and Advoware."""
    PARTY_COUNTERPART_MISSING = "party_counterpart_missing"
    """A party without its Advoware record, or an Advoware party whose EspoCRM record is gone."""
    BANK_ACCOUNT_DIFFERS = "bank_account_differs"
    """A linked bank account's synced fields differ."""
    BANK_ACCOUNT_COUNTERPART_MISSING = "bank_account_counterpart_missing"
    """A bank account not created in Advoware, or missing from its Advoware party's list."""
    CALENDAR_PAIR_BROKEN = "calendar_pair_broken"
    """A stored appointment ↔ event pair whose sides are gone, retagged or shared."""


FINDING_WORDS: dict[FindingType, str] = {
    FindingType.DOCUMENT_NOT_IN_COLLECTION: "document(s) marked clean but missing from a collection they belong in",
    FindingType.FILE_WITHOUT_DOCUMENT: "file(s) in a collection whose document is gone, unlinked or newer",
    FindingType.COLLECTION_WITHOUT_OWNER: "collection(s) without an owner",
    FindingType.ENTITY_WITHOUT_COLLECTION: "entit(ies) that should have a collection and have none",
    FindingType.PARTY_DIFFERS: "part(ies) whose synced fields differ between EspoCRM and Advoware",
    FindingType.PARTY_COUNTERPART_MISSING: "part(ies) whose counterpart is missing",
    FindingType.BANK_ACCOUNT_DIFFERS: "bank account(s) whose synced fields differ",
    FindingType.BANK_ACCOUNT_COUNTERPART_MISSING: "bank account(s) whose counterpart is missing",
    FindingType.CALENDAR_PAIR_BROKEN: "broken calendar pair(s)",
}


class Check(StrEnum):
    """The audit's passes, in the order it runs them."""

    COLLECTIONS = "collections"  # entities ↔ xAI collections (ownership)
    DOCUMENTS = "documents"  # each owned collection's files ↔ the owner's documents
    PARTIES = "parties"  # CBeteiligte ↔ Advoware Beteiligte
    BANK_ACCOUNTS = "bank_accounts"  # CBankverbindungen ↔ Advoware Bankverbindungen
    CALENDAR = "calendar"  # each employee's stored pairs ↔ Advoware appointments and Google events


class RepairAction(StrEnum):
    RESYNC = "resync"
    """Queue the sync of the entity through the ledger; it reads both sides and applies its rules."""
    RECORD_AND_RESYNC = "record_and_resync"
    """First write what xAI really holds into the document's `xaiCollections` (the sync trusts its
    own record of the other side), then queue its sync."""


@dataclass(frozen=True)
class Repair:
    action: RepairAction
    description: str
    events: tuple[dict[str, Any], ...]
    """`{"topic", "data"}` events for services.platform.ledger.mark_and_enqueue."""
    record: dict[str, Any] | None = None
    """RECORD_AND_RESYNC: `{"entity_type", "entity_id", "field": "xaiCollections", "add": [...], "remove": [...]}`."""

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action.value, "description": self.description, "events": list(self.events), "record": self.record}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Repair:
        return cls(RepairAction(str(data["action"])), str(data.get("description") or ""),
                   tuple(data.get("events") or ()), data.get("record"))


@dataclass(frozen=True)
class Finding:
    type: FindingType
    subject: str
    """What it is about, in words (`document 66a… "Vertrag.pdf"`, `xAI collection col-1`)."""
    summary: str
    """What disagrees, in one sentence."""
    why: str
    """The likely cause and what the repair (or an operator) does about it."""
    key: str
    """What makes it this disagreement (with type and entity: the id)."""
    entity: EntityRef | None = None
    details: dict[str, Any] = field(default_factory=dict)
    repair: Repair | None = None
    hint: str | None = None
    """What an operator does by hand when there is no automatic repair."""

    @property
    def id(self) -> str:
        ent = f"{self.entity.type.value}/{self.entity.id}" if self.entity else "-"
        return hashlib.sha256(f"{self.type.value}|{ent}|{self.key}".encode()).hexdigest()[:16]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": self.type.value, "subject": self.subject, "summary": self.summary, "why": self.why,
            "key": self.key, "entity": self.entity.as_json() if self.entity else None, "details": self.details,
            "repair": self.repair.as_json() if self.repair else None, "hint": self.hint,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        ent = data.get("entity")
        return cls(
            FindingType(str(data["type"])), str(data.get("subject") or ""), str(data.get("summary") or ""),
            str(data.get("why") or ""), str(data.get("key") or ""),
            parse_ref(str(ent["type"]), str(ent["id"])) if isinstance(ent, dict) else None,
            dict(data.get("details") or {}), Repair.from_json(data["repair"]) if data.get("repair") else None,
            data.get("hint"),
        )


@dataclass
class CheckRun:
    """One pass: whether it saw everything, what it examined, what it cost."""

    check: Check
    complete: bool = True
    note: str | None = None
    """Why it is incomplete (budget, an unreachable system), or what it skipped."""
    examined: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    seconds: float = 0.0
    skipped_busy: int = 0
    """Entities left out because the ledger has a sync of them pending or running."""

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check.value, "complete": self.complete, "note": self.note, "examined": self.examined,
                "calls": self.calls, "seconds": round(self.seconds, 3), "skipped_busy": self.skipped_busy}


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class AuditReport:
    id: str
    started_at: float
    trigger: str
    """`cron`, `http` (POST /ops/audit/run) or `cli`."""
    max_calls: int
    max_seconds: float
    finished_at: float = 0.0
    checks: list[CheckRun] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    """API calls per client service."""
    wanted: list[Check] = field(default_factory=lambda: list(Check))
    """The checks asked for (all by default)."""

    @property
    def not_run(self) -> list[Check]:
        ran = {c.check for c in self.checks}
        return [c for c in self.wanted if c not in ran]

    @property
    def complete(self) -> bool:
        return all(c.complete for c in self.checks) and not self.not_run

    def counts(self) -> dict[str, int]:
        counted = Counter(f.type.value for f in self.findings)
        return {t.value: counted.get(t.value, 0) for t in FindingType}

    def summary(self) -> dict[str, Any]:
        """The short form (logged by the cron, kept in the history)."""
        return {
            "id": self.id, "started_at": self.started_at, "finished_at": self.finished_at, "trigger": self.trigger,
            "complete": self.complete, "findings": len(self.findings), "repairable": sum(1 for f in self.findings if f.repair),
            "by_type": {k: v for k, v in self.counts().items() if v}, "calls": sum(self.calls.values()),
            "incomplete_checks": [c.check.value for c in self.checks if not c.complete],
            "not_run": [c.value for c in self.not_run], "checks_wanted": [c.value for c in self.wanted],
        }

    def text(self, max_findings: int | None = None) -> str:
        """The report in words (the first `max_findings` findings one by one, all of them counted)."""
        took = max(0.0, self.finished_at - self.started_at)
        head = (f"Drift audit of {_when(self.started_at)} ({self.trigger}): {len(self.findings)} finding(s), "
                f"{sum(self.calls.values())} API call(s) of {self.max_calls}, {took:.1f} s.")
        lines = [head]
        if not self.complete:
            parts = [f"{c.check.value}: {c.note}" for c in self.checks if not c.complete]
            if self.not_run:
                parts.append("not run: " + ", ".join(c.value for c in self.not_run))
            lines.append("Incomplete: " + "; ".join(parts) + ".")
        for t, n in self.counts().items():
            if n:
                lines.append(f"- {n} {FINDING_WORDS[FindingType(t)]}")
        if not self.findings:
            lines.append("Nothing disagrees" + (" in what was checked." if not self.complete else "."))
        for i, f in enumerate(self.findings[:max_findings], 1):
            fix = f"Repair: {f.repair.description}" if f.repair else f"By hand: {f.hint or 'see why'}"
            lines.append(f"{i}. [{f.id}] {f.subject}: {f.summary} Why: {f.why} {fix}")
        if max_findings is not None and len(self.findings) > max_findings:
            lines.append(f"... and {len(self.findings) - max_findings} more finding(s), counted above but not listed.")
        for c in self.checks:
            seen = ", ".join(f"{v} {k}" for k, v in c.examined.items())
            busy = f", {c.skipped_busy} left out (a sync is pending)" if c.skipped_busy else ""
            lines.append(f"Check {c.check.value}: {'complete' if c.complete else 'incomplete'} ({seen or 'nothing examined'}{busy}; "
                         f"{c.calls} call(s), {c.seconds:.1f} s)")
        return "\n".join(lines)

    def as_json(self, max_findings: int | None = None) -> dict[str, Any]:
        """The whole report; with `max_findings`, only the first ones (listed and in `text`), `findings_total` counts all."""
        return {
            **self.summary(), "max_calls": self.max_calls, "max_seconds": self.max_seconds, "calls_by_service": self.calls,
            "counts": self.counts(), "checks": [c.as_json() for c in self.checks],
            "findings": [f.as_json() for f in self.findings[:max_findings]], "findings_total": len(self.findings),
            "text": self.text(max_findings),
        }


__all__ = ["FINDING_WORDS", "AuditReport", "Check", "CheckRun", "Finding", "FindingType", "Repair", "RepairAction"]
