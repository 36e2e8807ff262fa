"""C1: every even second, the run fails; the condition records each scheduled slot it sees."""

from motia import cron

from tests.iii_local.conformance.queue_steps.deliveries import record


def seen(event, ctx):
    record("c1.fail", scheduled=event["scheduled_time"])
    return True


config = {"name": "C1 Failing", "flows": ["conformance"], "triggers": [cron("*/2 * * * * *", condition=seen)], "enqueues": []}


async def handler(_input, ctx):
    raise RuntimeError("cron run fails on purpose")
