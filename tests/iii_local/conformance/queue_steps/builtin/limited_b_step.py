"""Q2: one of two subscribers of cf.limited, each with concurrency 1."""

import asyncio

from motia import queue
from motia.types import QueueConfig

from tests.iii_local.conformance.queue_steps.deliveries import record

config = {"name": "Conf Limited B", "flows": ["conformance"], "triggers": [queue("cf.limited", config=QueueConfig(concurrency=1))], "enqueues": []}


async def handler(data, ctx):
    record("limited.start", step="B", n=data["n"])
    await asyncio.sleep(0.4)
    record("limited.end", step="B", n=data["n"])
