"""GET /ops/entities/:type/:id: one entity's view for operators (services.ops.status): its sync
fields, its counterparts, the ledger, held deletes, tombstones and recent activity.
`Authorization: Bearer <OPS_TOKEN>`; 503 when unset. The API: services/ops/api.py."""

from motia import http

from services.ops.entities import parse_ref
from services.ops.status import entity_status
from src.glue.ops import answer, path_param, systems
from src.glue.steps import step_config

config = step_config("Ops Entity View", "Operators: where an entity is in every system, and why", "system",
                     [http("GET", "/ops/entities/:type/:id")], [])


async def handler(request, ctx):
    async def work():
        ref = parse_ref(path_param(request, "type"), path_param(request, "id"))
        return 200, await entity_status(systems(ctx), ref)

    return await answer(request, ctx, "entity view", work)
