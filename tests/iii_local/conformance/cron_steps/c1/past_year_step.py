"""C1: the 7th field is the year; 2020 never comes again."""

from motia import cron

from tests.iii_local.conformance.queue_steps.deliveries import record

config = {"name": "C1 Past Year", "flows": ["conformance"], "triggers": [cron("* * * * * * 2020")], "enqueues": []}


async def handler(_input, ctx):
    record("c1.past_year")
