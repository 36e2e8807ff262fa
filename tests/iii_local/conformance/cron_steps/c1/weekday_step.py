"""C1: today's weekday with Sunday = 1 (under Sunday = 0 this would be tomorrow)."""

from motia import cron

from tests.iii_local.conformance.cron_steps.days import TODAY_DOW
from tests.iii_local.conformance.queue_steps.deliveries import record

config = {"name": "C1 Weekday", "flows": ["conformance"], "triggers": [cron(f"* * * * * {TODAY_DOW}")], "enqueues": []}


async def handler(_input, ctx):
    record("c1.weekday")
