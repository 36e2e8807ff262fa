"""R2: declares concurrency 1, which the Redis adapter never reads."""

import asyncio

from motia import queue
from motia.types import QueueConfig

from tests.iii_local.conformance.queue_steps.deliveries import record

config = {"name": "Conf Redis Burst", "flows": ["conformance-redis"], "triggers": [queue("cfr.burst", config=QueueConfig(concurrency=1))], "enqueues": []}


async def handler(data, ctx):
    record("burst.start", n=data["n"])
    await asyncio.sleep(0.5)
    record("burst.end", n=data["n"])
