"""Q2: type fifo with concurrency 5; a message with fail_once fails its first attempt."""

import asyncio

from motia import queue
from motia.types import QueueConfig

from tests.iii_local.conformance.queue_steps.deliveries import log_path, read, record

config = {"name": "Conf Fifo", "flows": ["conformance"], "triggers": [queue("cf.fifo", config=QueueConfig(type="fifo", concurrency=5))], "enqueues": []}


async def handler(data, ctx):
    record("fifo.start", n=data["n"])
    await asyncio.sleep(0.1)
    if data.get("fail_once") and len(read(log_path(), "fifo.start", n=data["n"])) == 1:
        record("fifo.fail", n=data["n"])
        raise RuntimeError("first attempt fails")
    record("fifo.end", n=data["n"])
