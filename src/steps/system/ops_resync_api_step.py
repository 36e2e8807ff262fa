"""POST /ops/entities/:type/:id/resync `{"full"?}`: queue the entity's syncs through the ledger
(services.ops.resync; 202 with the marks). `Authorization: Bearer <OPS_TOKEN>`; 503 when unset."""

from motia import http

from services.ops.api import parse_resync
from services.ops.entities import parse_ref
from services.ops.resync import resync
from services.platform.ledger.policies import all_topics
from src.glue.ops import answer, path_param, systems
from src.glue.steps import step_config

config = step_config("Ops Entity Resync", "Operators: sync one entity again now, through the ledger", "system",
                     [http("POST", "/ops/entities/:type/:id/resync")], sorted(all_topics()))


async def handler(request, ctx):
    async def work():
        ref = parse_ref(path_param(request, "type"), path_param(request, "id"))
        full = parse_resync(request.body)
        body = await resync(systems(ctx), ref, ctx, full=full)
        ctx.logger.info(f"ops resync of {ref.type.value} {ref.id}: {len(body['queued'])} sync(s) queued",
                        {"entity_type": ref.type.value, "entity_id": ref.id, "queued": len(body["queued"])})
        return 202, body

    return await answer(request, ctx, "resync", work)
