"""Q3: holds its only slot until the test releases it, far beyond visibilityTimeout and the REST timeout."""

from motia import queue
from motia.types import QueueConfig

from tests.iii_local.conformance.queue_steps.deliveries import record, wait_released

config = {
    "name": "Conf Hang",
    "flows": ["conformance"],
    "triggers": [queue("cf.hang", config=QueueConfig(concurrency=1, visibility_timeout=1))],
    "enqueues": [],
}


async def handler(data, ctx):
    record("hang.start", key=data["key"])
    await wait_released(data["key"])
    record("hang.done", key=data["key"])
