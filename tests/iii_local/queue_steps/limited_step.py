import asyncio
import time

from motia import queue
from motia.types import QueueConfig

config = {"name": "Queue Limited", "triggers": [queue("qc.limited", config=QueueConfig(concurrency=2))], "enqueues": []}


async def handler(data, ctx):
    start = time.time()
    await asyncio.sleep(0.3)
    await ctx.state.set("qc.limited", data["key"], {"start": start, "end": time.time()})
