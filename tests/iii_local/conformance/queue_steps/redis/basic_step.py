"""R1: a plain subscriber."""

from motia import queue

from tests.iii_local.conformance.queue_steps.deliveries import record

config = {"name": "Conf Redis Basic", "flows": ["conformance-redis"], "triggers": [queue("cfr.basic")], "enqueues": []}


async def handler(data, ctx):
    record("basic", n=data["n"], trace_id=ctx.trace_id)
