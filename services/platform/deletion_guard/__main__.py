"""Operators' command for the deletion guard (reads REDIS_URL and DELETE_GUARD_* like the worker):

    python -m services.platform.deletion_guard status
    python -m services.platform.deletion_guard held [--json]
    python -m services.platform.deletion_guard confirm [KEY ...]
    python -m services.platform.deletion_guard reset
    python -m services.platform.deletion_guard tombstones [--limit N] [--json]
    python -m services.platform.deletion_guard restore ID [--unlink] [--dry-run]
    python -m services.platform.deletion_guard export FILE

`confirm` approves the held deletes (all, or the named keys `{system}:{entity_type}:{id}`
that `held` lists), clears the trip and the hour's count, and marks the held records' syncs in
the sync ledger: the sweeper enqueues them (after LEDGER_GRACE_SECONDS) and they delete.
`reset` clears the trip and the count without approving anything (the held records are
judged again, within the budget). `restore` re-creates a tombstone's record (restore.py);
`export` writes every kept tombstone as JSON lines (a backup outside Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, TextIO

from services.platform.deletion_guard.guard import DeletionGuard, find_tombstone
from services.platform.deletion_guard.restore import restore
from services.platform.models import espo_datetime


def _when(ts: Any) -> str:
    return espo_datetime(datetime.fromtimestamp(float(ts), tz=UTC)) if ts else "-"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.platform.deletion_guard", description="The mass-deletion guard.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="budget, deletes in the last hour, whether it tripped")
    held = sub.add_parser("held", help="the deletes waiting for a confirm")
    held.add_argument("--json", action="store_true")
    confirm = sub.add_parser("confirm", help="approve held deletes (all, or the named keys) and re-queue their syncs")
    confirm.add_argument("keys", nargs="*")
    sub.add_parser("reset", help="clear the trip and the hour's count (approves nothing)")
    tomb = sub.add_parser("tombstones", help="the kept last states of deleted records, newest first")
    tomb.add_argument("--limit", type=int, default=50)
    tomb.add_argument("--json", action="store_true")
    rest = sub.add_parser("restore", help="re-create the record of a tombstone")
    rest.add_argument("id")
    rest.add_argument("--unlink", action="store_true", help="EspoCRM records: drop advowareId (the sync creates the Advoware record anew)")
    rest.add_argument("--dry-run", action="store_true", help="show the tombstone, create nothing")
    export = sub.add_parser("export", help="write every kept tombstone to FILE as JSON lines")
    export.add_argument("file")
    return parser


async def _requeue(entries: list[dict[str, Any]], ledger: Any, out: TextIO) -> None:
    events = [e["retry"] for e in entries if e.get("retry")]
    if events:
        await ledger.mark_events(events)
    for e in entries:
        out.write(f"approved {e['key']}\n")
    out.write(f"{len(entries)} held delete(s) approved; {len(events)} sync(s) marked, the sweeper enqueues them\n")


async def _restore(tomb: dict[str, Any] | None, args: argparse.Namespace, clients: dict[str, Any], out: TextIO) -> int:
    if tomb is None:
        out.write(f"no tombstone {args.id}\n")
        return 1
    if args.dry_run:
        out.write(json.dumps(tomb, ensure_ascii=False, indent=2) + "\n")
        return 0
    created = await restore(tomb, unlink=args.unlink, **clients)
    out.write(f"restored {tomb['key']} as {created['system']} {created['entity_type']} {created['id']}"
              f"{' with ' + ', '.join(created['related']) if created['related'] else ''}\n")
    return 0


async def run(
    argv: Sequence[str], out: TextIO = sys.stdout, *, guard: DeletionGuard | None = None, ledger: Any = None,
    clients: dict[str, Any] | None = None,
) -> int:
    """Run one command; returns the exit status. The guard, the ledger and the clients
    (`espocrm`, `advoware`, `google`) default to ones built from the settings."""
    args = _parser().parse_args(list(argv))
    async with AsyncExitStack() as stack:
        need_clients = clients is None and args.command == "restore"
        if guard is None or (ledger is None and args.command == "confirm") or need_clients:
            guard, ledger, clients = await _from_settings(stack, guard, ledger, clients if not need_clients else None, need_clients)
        assert guard is not None
        if args.command == "status":
            out.write(json.dumps(await guard.status(), indent=2, default=str) + "\n")
        elif args.command == "held":
            for e in await guard.held():
                out.write(json.dumps(e, ensure_ascii=False) + "\n" if args.json else f"{_when(e.get('at'))}  {e['key']:<48} {e.get('reason', '')}\n")
        elif args.command == "confirm":
            await _requeue(await guard.confirm(args.keys or None), ledger, out)
        elif args.command == "reset":
            await guard.reset()
            out.write("guard reset: the hour's count cleared, nothing approved\n")
        elif args.command == "tombstones":
            for t in await guard.tombstones(limit=args.limit):
                out.write(json.dumps(t, ensure_ascii=False) + "\n" if args.json else f"{t['id']:<20} {_when(t.get('at'))}  {t['key']:<48} {t.get('reason', '')}\n")
        elif args.command == "restore":
            return await _restore(await find_tombstone(guard, args.id), args, clients or {}, out)
        else:
            items = await guard.tombstones(limit=0)
            with open(args.file, "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in items)
            out.write(f"{len(items)} tombstone(s) written to {args.file}\n")
    return 0


async def _from_settings(
    stack: AsyncExitStack, guard: Any, ledger: Any, clients: dict[str, Any] | None, need_clients: bool
) -> tuple[Any, Any, dict[str, Any] | None]:
    import redis.asyncio as aioredis

    from services.platform.container import (
        advoware_from_settings,
        espocrm_from_settings,
        google_calendar_from_settings,
        ledger_from_settings,
    )
    from services.platform.deletion_guard import guard_from_settings
    from services.platform.settings import load_settings

    settings = load_settings()
    redis = aioredis.Redis.from_url(settings.redis_url)
    stack.push_async_callback(redis.aclose)
    if need_clients:
        clients = {"espocrm": espocrm_from_settings(settings), "advoware": advoware_from_settings(settings, redis=redis),
                   "google": google_calendar_from_settings(settings)}
        for client in clients.values():
            stack.push_async_callback(client.close)
    return guard or guard_from_settings(settings, redis), ledger or ledger_from_settings(settings, redis), clients


def main() -> None:
    sys.exit(asyncio.run(run(sys.argv[1:])))


if __name__ == "__main__":
    main()
