"""GET /ops/ledger?kind=&dead=1&limit=: the sync ledger for operators (counts per kind and
the live or dead marks) as JSON. `Authorization: Bearer <OPS_TOKEN>`; 503 when unset."""

from motia import http

from services.platform.container import get_ledger
from services.platform.ledger import LedgerError
from services.platform.ledger.ops import OpsRejected, ledger_view, parse_view_query
from src.glue.http import json_response
from src.glue.ops import check_token
from src.glue.steps import step_config

config = step_config("Ledger Ops View", "Operators: the sync ledger's marks (pending, retrying, dead) per kind", "system", [http("GET", "/ops/ledger")], [])


async def handler(request, ctx):
    try:
        await check_token(request.headers)
        kind, dead, limit = parse_view_query(request.query_params)
        return json_response(200, await ledger_view(get_ledger(), kind=kind, dead=dead, limit=limit))
    except OpsRejected as exc:
        ctx.logger.warn(f"ledger view refused: {exc.reason}", {"status": exc.status})
        return json_response(exc.status, exc.body())
    except LedgerError as exc:
        return json_response(503, {"error": str(exc)})
