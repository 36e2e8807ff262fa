from motia import queue

config = {"name": "Compat Fanout B", "flows": ["compat"], "triggers": [queue("compat.fanout")], "enqueues": []}


async def handler(data, ctx):
    await ctx.state.set("compat.fanout", f"B:{data['n']}", data)
