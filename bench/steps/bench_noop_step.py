from motia import queue
from motia.types import QueueConfig

config = {"name": "Bench Noop", "flows": ["bench"], "triggers": [queue("bench.ingested", config=QueueConfig(concurrency=50))], "enqueues": []}


async def handler(data, ctx):
    return None
