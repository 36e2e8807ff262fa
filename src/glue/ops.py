"""Step glue of the operators' API (src/steps/system/ops_*_step.py): the bearer check, the
systems the services read (clients, `ctx.state`, ledger, deletion guard), and the one mapping
of failures to answers (services.ops.api documents the endpoints).

400 bad input, 401 no or a wrong token (429 past the failure limit, `check_token`), 404 nothing to act on, 503 OPS_TOKEN unset or Redis
unreachable; a failing external system is reported inside a 200 answer by the services.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from services.ops.audit.runs import NoReport
from services.ops.audit.store import ReportStore
from services.ops.entities import BadReference
from services.ops.resync import NotResyncable
from services.ops.systems import Systems
from services.platform.auth import AuthFailureLimiter, client_address
from services.platform.container import get_advoware, get_espocrm, get_google_calendar, get_ledger, get_redis_client, get_xai
from services.platform.deletion_guard import get_deletion_guard
from services.platform.ledger import LedgerError
from services.platform.ledger.ops import OpsRejected, authorize
from services.platform.settings import get_settings
from src.glue.http import json_response

OPS_FAILURE_KEY_PREFIX = "ops:authfail:"


def systems(ctx: Any) -> Systems:
    return Systems(get_espocrm(), get_xai(), get_advoware(), get_google_calendar(), ctx.state, get_ledger(), get_settings(),
                   get_deletion_guard())


def report_store() -> ReportStore:
    return ReportStore(get_redis_client(), get_settings().ops.key_prefix)


async def check_token(headers: Any) -> None:
    """OPS_TOKEN as `Authorization: Bearer` (services.platform.ledger.ops.authorize), with the
    Advoware proxy's limit on failures: past ADVOWARE_PROXY_AUTH_FAILURE_LIMIT wrong tokens from
    one client address within the window, every request from it is refused 429 until the window
    ends (counted in Redis under `ops:authfail:{address}`), before the token is compared."""
    settings = get_settings()
    limiter = AuthFailureLimiter(
        get_redis_client(), limit=settings.advoware.proxy_auth_failure_limit,
        window_seconds=settings.advoware.proxy_auth_failure_window_seconds, key_prefix=OPS_FAILURE_KEY_PREFIX,
    )
    expected = settings.ops_token.get_secret_value() if settings.ops_token else None
    await limiter.admit(client_address(headers), lambda: authorize(headers, expected), lambda _wait, reason: OpsRejected(429, reason))


async def answer(request: Any, ctx: Any, what: str, work: Callable[[], Awaitable[tuple[int, Any]]]) -> Any:
    """Authorize, run `work` (→ status, body) and map its failures (module docstring)."""
    try:
        await check_token(request.headers)
        status, body = await work()
    except OpsRejected as exc:
        ctx.logger.warn(f"ops {what} refused: {exc.reason}", {"status": exc.status})
        return json_response(exc.status, exc.body())
    except BadReference as exc:
        return json_response(400, {"error": str(exc)})
    except (NoReport, NotResyncable) as exc:
        return json_response(404, {"error": str(exc)})
    except (LedgerError, RedisError) as exc:
        ctx.logger.error(f"ops {what}: Redis unavailable: {exc}", {})
        return json_response(503, {"error": f"Redis unavailable: {exc}"})
    return json_response(status, body)


def path_param(request: Any, name: str) -> str:
    return str((getattr(request, "path_params", None) or {}).get(name) or "")
