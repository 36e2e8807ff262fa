"""delaySeconds=1, which engine 0.8.3 parses and drops: the message is delivered at once."""

import time

from motia import queue
from motia.types import QueueConfig

config = {"name": "Queue Delayed", "triggers": [queue("qc.delayed", config=QueueConfig(delay_seconds=1))], "enqueues": []}


async def handler(data, ctx):
    await ctx.state.set("qc.delayed", data["key"], {"at": time.time()})
