from motia import http

config = {"name": "Bench Ingest", "flows": ["bench"], "triggers": [http("POST", "/bench/ingest")], "enqueues": ["bench.ingested"]}


async def handler(request, ctx):
    await ctx.enqueue({"topic": "bench.ingested", "data": request.body})
    return {"status": 202, "headers": {"Content-Type": "application/json"}, "body": {"queued": True}}
