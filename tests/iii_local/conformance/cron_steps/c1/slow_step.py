"""C1: every second, but a run takes 2.5 s: the engine awaits it inline and skips the ticks it overlaps."""

import asyncio

from motia import cron

from tests.iii_local.conformance.queue_steps.deliveries import record

config = {"name": "C1 Slow", "flows": ["conformance"], "triggers": [cron("* * * * * *")], "enqueues": []}


async def handler(_input, ctx):
    record("c1.slow.start")
    await asyncio.sleep(2.5)
    record("c1.slow.end")
