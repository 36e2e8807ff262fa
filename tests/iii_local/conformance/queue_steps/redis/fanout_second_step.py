"""R2: one of two subscribers of cfr.fanout on every engine."""

from motia import queue

from tests.iii_local.conformance.queue_steps.deliveries import record

config = {"name": "Conf Redis Second", "flows": ["conformance-redis"], "triggers": [queue("cfr.fanout")], "enqueues": []}


async def handler(data, ctx):
    record("fanout", step="Second", n=data["n"])
