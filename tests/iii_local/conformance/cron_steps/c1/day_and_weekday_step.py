"""C1: today's day of month AND a weekday three days away: never (Vixie cron's OR would fire)."""

from motia import cron

from tests.iii_local.conformance.cron_steps.days import OTHER_DOW, TODAY_DOM
from tests.iii_local.conformance.queue_steps.deliveries import record

config = {"name": "C1 Day And Weekday", "flows": ["conformance"], "triggers": [cron(f"* * * {TODAY_DOM} * {OTHER_DOW}")], "enqueues": []}


async def handler(_input, ctx):
    record("c1.and")
