"""Fails until its per-message counter reaches `succeed_on`; `poison` always fails."""

from motia import queue
from motia.types import QueueConfig

config = {
    "name": "Compat Flaky",
    "flows": ["compat"],
    "triggers": [queue("compat.flaky", config=QueueConfig(max_retries=2, backoff_delay_ms=100))],
    "enqueues": [],
}


async def handler(data, ctx):
    key = data["key"]
    result = await ctx.state.update("compat.flaky", key, [{"type": "increment", "path": "attempts", "by": 1}])
    attempts = result["new_value"]["attempts"]
    fixed = await ctx.state.get("compat.flaky.fixed", key)
    if data.get("poison") and not fixed:
        raise ValueError(f"poison message {key}")
    if attempts < data.get("succeed_on", 1):
        raise RuntimeError(f"transient failure {attempts}")
    await ctx.state.set("compat.flaky.done", key, {"attempts": attempts})
