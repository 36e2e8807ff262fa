"""C1: every second; the condition records the event the engine sends (the handler gets None)."""

from motia import cron

from tests.iii_local.conformance.queue_steps.deliveries import record


def seen(event, ctx):
    record("c1.every", payload=event)
    return True


config = {"name": "C1 Every Second", "flows": ["conformance"], "triggers": [cron("* * * * * *", condition=seen)], "enqueues": []}


async def handler(_input, ctx):
    record("c1.every.run")
