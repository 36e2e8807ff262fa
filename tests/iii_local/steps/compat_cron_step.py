from motia import cron

config = {"name": "Compat Cron", "flows": ["compat"], "triggers": [cron("* * * * * *")], "enqueues": []}


async def handler(_input, ctx):
    await ctx.state.update("compat.cron", "ticks", [{"type": "increment", "path": "n", "by": 1}])
