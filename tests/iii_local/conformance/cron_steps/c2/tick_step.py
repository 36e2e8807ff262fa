"""C2: every second; the condition records which engine fired which slot with which job id."""

import asyncio

from motia import cron

from tests.iii_local.conformance.queue_steps.deliveries import record


def seen(event, ctx):
    record("c2.tick", job_id=event["job_id"], scheduled=event["scheduled_time"])
    return True


config = {"name": "C2 Tick", "flows": ["conformance"], "triggers": [cron("* * * * * *", condition=seen)], "enqueues": []}


async def handler(_input, ctx):
    await asyncio.sleep(0.4)  # the run holds cron_lock:{trigger id} meanwhile
