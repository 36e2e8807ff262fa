"""Queue behaviours: fan-out to two subscribers, retries, dead letters, slow work."""


from motia import queue

config = {
    "name": "Compat Fanout A",
    "flows": ["compat"],
    "triggers": [queue("compat.fanout")],
    "enqueues": [],
}


async def handler(data, ctx):
    ctx.logger.info("fanout A got", data)
    await ctx.state.set("compat.fanout", f"A:{data['n']}", data)
