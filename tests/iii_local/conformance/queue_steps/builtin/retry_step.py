"""Q2/Q4: always fails; declares a retry budget, backoff, delay and visibility timeout the engine ignores."""

from motia import queue
from motia.types import QueueConfig

from tests.iii_local.conformance.queue_steps.deliveries import record

config = {
    "name": "Conf Retry",
    "flows": ["conformance"],
    "triggers": [queue("cf.retry", config=QueueConfig(max_retries=8, backoff_type="fixed", backoff_delay_ms=10_000, delay_seconds=30, visibility_timeout=1))],
    "enqueues": [],
}


async def handler(data, ctx):
    record("retry", key=data["key"])
    raise RuntimeError(f"always failing {data['key']}")
