"""Q5: concurrency 1; a message with hang holds the slot until released."""

from motia import queue
from motia.types import QueueConfig

from tests.iii_local.conformance.queue_steps.deliveries import record, wait_released

config = {"name": "Conf Persist", "flows": ["conformance"], "triggers": [queue("cf.persist", config=QueueConfig(concurrency=1))], "enqueues": []}


async def handler(data, ctx):
    record("persist.start", key=data["key"])
    if data.get("hang"):
        await wait_released(data["key"])
    record("persist.done", key=data["key"])
