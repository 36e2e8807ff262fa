"""type fifo (concurrency 10): one message at a time for the whole subscription, in order.
Engine 0.8.3 never sees Motia's messageGroupId (every job is in group "default")."""

import asyncio
import time

from motia import queue
from motia.types import QueueConfig

config = {"name": "Queue Fifo", "triggers": [queue("qc.fifo", config=QueueConfig(type="fifo", concurrency=10))], "enqueues": []}


async def handler(data, ctx):
    start = time.time()
    await asyncio.sleep(0.05)
    await ctx.state.set("qc.fifo", f"{data['group']}:{data['n']:03d}", {"start": start, "end": time.time()})
