"""Where the drift audit's reports are kept (Redis): the last report whole, the summaries of
the last HISTORY reports, and per report the repairs queued from it.

Keys (prefix OPS_KEY_PREFIX, default `ops`): `{prefix}:audit:last` (JSON of the last report,
at most MAX_STORED_FINDINGS findings, listed and in its `text`; `findings_total` counts all), `{prefix}:audit:history`
(list of summaries, newest first), `{prefix}:audit:repairs:{report id}` (hash: finding id →
JSON of the queued repair, expiring with REPAIRS_TTL_SECONDS).
"""

from __future__ import annotations

import json
from typing import Any

from services.ops.audit.model import AuditReport

HISTORY = 30
MAX_STORED_FINDINGS = 2000
REPAIRS_TTL_SECONDS = 30 * 24 * 3600


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class ReportStore:
    """The reports on one Redis database, under `{prefix}:audit:`."""

    def __init__(self, redis: Any, prefix: str = "ops") -> None:
        self.redis = redis
        self.base = f"{prefix}:audit"

    def _key(self, name: str) -> str:
        return f"{self.base}:{name}"

    async def save(self, report: AuditReport) -> dict[str, Any]:
        """Keep `report` as the last one (and its summary in the history); returns the stored JSON."""
        body = report.as_json(MAX_STORED_FINDINGS)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._key("last"), json.dumps(body, ensure_ascii=False, default=str))
        pipe.lpush(self._key("history"), json.dumps(report.summary(), ensure_ascii=False))
        pipe.ltrim(self._key("history"), 0, HISTORY - 1)
        await pipe.execute()
        return body

    async def last(self) -> dict[str, Any] | None:
        """The last report with, per finding, the repair queued from it (`repaired`), or None."""
        raw = await self.redis.get(self._key("last"))
        if not raw:
            return None
        body: dict[str, Any] = json.loads(_text(raw))
        repairs = await self.repairs(str(body.get("id")))
        for finding in body.get("findings") or []:
            finding["repaired"] = repairs.get(str(finding.get("id")))
        return body

    async def history(self, limit: int = HISTORY) -> list[dict[str, Any]]:
        return [json.loads(_text(v)) for v in await self.redis.lrange(self._key("history"), 0, max(0, limit - 1))]

    async def repairs(self, report_id: str) -> dict[str, Any]:
        raw = await self.redis.hgetall(self._key(f"repairs:{report_id}"))
        return {_text(k): json.loads(_text(v)) for k, v in raw.items()}

    async def note_repairs(self, report_id: str, outcomes: dict[str, dict[str, Any]]) -> None:
        if not outcomes:
            return
        key = self._key(f"repairs:{report_id}")
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={k: json.dumps(v, ensure_ascii=False, default=str) for k, v in outcomes.items()})
        pipe.expire(key, REPAIRS_TTL_SECONDS)
        await pipe.execute()


__all__ = ["HISTORY", "MAX_STORED_FINDINGS", "ReportStore"]
