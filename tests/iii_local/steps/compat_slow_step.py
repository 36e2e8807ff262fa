import asyncio

from motia import queue
from motia.types import QueueConfig

config = {
    "name": "Compat Slow",
    "flows": ["compat"],
    "triggers": [queue("compat.slow", config=QueueConfig(max_retries=5, backoff_delay_ms=100, concurrency=5))],
    "enqueues": [],
}


async def handler(data, ctx):
    await asyncio.sleep(data.get("sleep", 0.05))
    await ctx.state.update("compat.slow", str(data["n"]), [{"type": "increment", "path": "runs", "by": 1}])
