"""GET /ops/search?q=&limit=: any id or name to the entities the operators' view can show
(services.ops.search). `Authorization: Bearer <OPS_TOKEN>`; 503 when unset."""

from motia import http

from services.ops.api import parse_search
from services.ops.search import search
from src.glue.ops import answer, systems
from src.glue.steps import step_config

config = step_config("Ops Search", "Operators: find an entity by id or name", "system", [http("GET", "/ops/search")], [])


async def handler(request, ctx):
    async def work():
        q, limit = parse_search(request.query_params)
        return 200, await search(systems(ctx), q, limit=limit)

    return await answer(request, ctx, "search", work)
