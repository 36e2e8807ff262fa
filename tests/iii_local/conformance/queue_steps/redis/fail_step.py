"""R1: always fails, with a retry budget the Redis adapter never uses."""

from motia import queue
from motia.types import QueueConfig

from tests.iii_local.conformance.queue_steps.deliveries import record

config = {"name": "Conf Redis Fail", "flows": ["conformance-redis"], "triggers": [queue("cfr.fail", config=QueueConfig(max_retries=5, backoff_delay_ms=100))], "enqueues": []}


async def handler(data, ctx):
    record("fail", n=data["n"])
    raise RuntimeError("always failing")
