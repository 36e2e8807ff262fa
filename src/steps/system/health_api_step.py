"""GET /health: is the worker up, in which mode, and can it reach Redis?

Importing this step validates the configuration (services.platform.settings.get_settings): the worker
loads every step at start, so a missing or malformed setting stops the worker at start-up
with one message naming every problem, instead of failing on the first webhook.
"""

from motia import http

from services.platform.container import get_redis_client
from services.platform.settings import get_settings
from src.glue.http import json_response
from src.glue.steps import step_config

SETTINGS = get_settings()  # fail fast at worker start-up

config = step_config("System Health", "Liveness and readiness of the worker: mode and Redis reachability", "system", [http("GET", "/health")], [])


async def handler(request, ctx):
    try:
        await get_redis_client().ping()
        redis_ok = True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        redis_ok = False
    body = {"status": "ok" if redis_ok else "degraded", "mode": SETTINGS.mode.value, "redis": "ok" if redis_ok else "unreachable"}
    return json_response(200 if redis_ok else 503, body)
