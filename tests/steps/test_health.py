"""GET /health answers with the mode and Redis reachability."""

from iii_local.testing import MotiaTester


async def test_health(stack: MotiaTester) -> None:
    r = await stack.get("/health")
    assert r.status == 200
    assert r.json() == {"status": "ok", "mode": "sandbox", "redis": "ok"}
