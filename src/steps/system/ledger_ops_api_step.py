"""GET /ops/ledger?kind=&dead=1&limit=: the sync ledger for operators (counts per kind and
the live or dead marks) as JSON. `Authorization: Bearer <OPS_TOKEN>`; 503 when unset."""

from motia import http

from services.platform.container import get_ledger
from services.platform.ledger.ops import ledger_view, parse_view_query
from src.glue.ops import answer
from src.glue.steps import step_config

config = step_config("Ledger Ops View", "Operators: the sync ledger's marks (pending, retrying, dead) per kind", "system", [http("GET", "/ops/ledger")], [])


async def handler(request, ctx):
    async def work():
        kind, dead, limit = parse_view_query(request.query_params)
        return 200, await ledger_view(get_ledger(), kind=kind, dead=dead, limit=limit)

    return await answer(request, ctx, "ledger view", work)
