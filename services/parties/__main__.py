"""Operators' command for the party sync (reads REDIS_URL like the worker):

    python -m services.parties full-reconcile

asks the party cron's next run (within 10 minutes; `iii-cli cron trigger "steps::VMH
Beteiligte Sync Cron::trigger::0"` runs it now) for a full reconcile: both sides' parties
listed entirely, every linked record missing from a list re-queued (services.parties.reconcile,
rule 4). The request stays until a run's listings have answered.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from services.parties.reconcile import request_full


async def run(argv: Sequence[str], out: TextIO = sys.stdout, redis: object | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.parties", description="The party sync.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("full-reconcile", help="list both sides entirely on the cron's next run")
    parser.parse_args(list(argv))
    if redis is None:
        import redis.asyncio as aioredis

        from services.platform.settings import load_settings

        client = aioredis.Redis.from_url(load_settings().redis_url)
        try:
            await request_full(client)
        finally:
            await client.aclose()
    else:
        await request_full(redis)
    out.write("full reconcile requested: the party cron's next run lists both sides entirely\n")
    return 0


def main() -> None:
    sys.exit(asyncio.run(run(sys.argv[1:])))


if __name__ == "__main__":
    main()
