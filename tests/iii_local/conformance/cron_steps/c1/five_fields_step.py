"""C1: a 5-field expression is refused by the engine (seconds come first; 6 or 7 fields)."""

from motia import cron

from tests.iii_local.conformance.queue_steps.deliveries import record

config = {"name": "C1 Five Fields", "flows": ["conformance"], "triggers": [cron("* * * * *")], "enqueues": []}


async def handler(_input, ctx):
    record("c1.five")
