"""Q1: one of two subscribers of cf.compete."""

from motia import queue

from tests.iii_local.conformance.queue_steps.deliveries import record

config = {"name": "Conf Compete B", "flows": ["conformance"], "triggers": [queue("cf.compete")], "enqueues": []}


async def handler(data, ctx):
    record("compete", step="B", n=data["n"], trace_id=ctx.trace_id)
