"""Operators' command for the sync ledger (reads REDIS_URL and LEDGER_* like the worker):

    python -m services.platform.ledger stats
    python -m services.platform.ledger ls [--kind K] [--dead] [--limit N] [--json]
    python -m services.platform.ledger replay [--kind K] [ID ...]

`replay` without ids puts every dead mark (of K) back to pending with a fresh attempt
budget; with ids, those marks (dead or live). Replayed marks are due at once: the next
sweeper run (LEDGER_SWEEP_CRON, every 30 s by default) enqueues them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from services.platform.ledger.policies import SyncKind
from services.platform.models import espo_datetime


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return espo_datetime(datetime.fromtimestamp(ts, tz=UTC))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.platform.ledger", description="The sync ledger: list and replay marks.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stats", help="counts per kind")
    ls = sub.add_parser("ls", help="list live (pending, retrying) or dead marks")
    ls.add_argument("--kind", choices=[k.value for k in SyncKind])
    ls.add_argument("--dead", action="store_true", help="the dead list instead of the live marks")
    ls.add_argument("--limit", type=int, default=200)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    replay = sub.add_parser("replay", help="put dead (or the named) marks back to pending")
    replay.add_argument("--kind", choices=[k.value for k in SyncKind])
    replay.add_argument("ids", nargs="*")
    return parser


async def run(argv: Sequence[str], out: TextIO = sys.stdout, ledger: Any = None) -> int:
    """Run one command; returns the exit status. `ledger` defaults to one from the settings."""
    args = _parser().parse_args(list(argv))
    own_client = None
    if ledger is None:
        import redis.asyncio as aioredis

        from services.platform.container import ledger_from_settings
        from services.platform.settings import load_settings

        settings = load_settings()
        own_client = aioredis.Redis.from_url(settings.redis_url)
        ledger = ledger_from_settings(settings, own_client)
    try:
        kind = SyncKind(args.kind) if getattr(args, "kind", None) else None
        if args.command == "stats":
            for name, counts in (await ledger.stats()).items():
                out.write(f"{name:<18} " + "  ".join(f"{k}={v}" for k, v in counts.items()) + "\n")
        elif args.command == "ls":
            marks = await (ledger.dead(kind, limit=args.limit) if args.dead else ledger.live(kind, limit=args.limit))
            for m in marks:
                if args.json:
                    out.write(json.dumps(m.as_json(), ensure_ascii=False) + "\n")
                else:
                    when = _when(m.died_at) if args.dead else _when(m.due_at)
                    error = (m.last_error or "")[:100]
                    out.write(f"{m.kind.value:<18} {m.entity_id:<32} {m.state:<9} attempts={m.attempts:<2} "
                              f"{'died' if args.dead else 'due'}={when}  {error}\n")
            if not args.json:
                out.write(f"{len(marks)} mark(s)\n")
        else:
            replayed = await ledger.replay(kind, args.ids or None)
            for m in replayed:
                out.write(f"replayed {m.kind.value} {m.entity_id}\n")
            out.write(f"{len(replayed)} mark(s) back to pending; the sweeper enqueues them on its next run\n")
    finally:
        if own_client is not None:
            await own_client.aclose()
    return 0


def main() -> None:
    sys.exit(asyncio.run(run(sys.argv[1:])))


if __name__ == "__main__":
    main()
