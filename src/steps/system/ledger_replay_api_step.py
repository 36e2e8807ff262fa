"""POST /ops/ledger/replay `{"kind"?, "ids"?}`: put dead (or named) sync ledger marks back
to pending with a fresh attempt budget and enqueue them now. Without ids: every dead mark
(of `kind`). `Authorization: Bearer <OPS_TOKEN>`; 503 when unset."""

from motia import http

from services.platform.container import get_ledger
from services.platform.ledger import enqueue_marked
from services.platform.ledger.ops import parse_replay_body, replay_summary
from services.platform.ledger.policies import all_topics
from src.glue.ops import answer
from src.glue.steps import step_config

config = step_config("Ledger Ops Replay", "Operators: replay dead sync ledger marks", "system",
                     [http("POST", "/ops/ledger/replay")], sorted(all_topics()))


async def handler(request, ctx):
    async def work():
        kind, ids = parse_replay_body(request.body)
        replayed = await get_ledger().replay(kind, ids)
        enqueued = await enqueue_marked(ctx, replayed)
        ctx.logger.info(f"ledger replay: {len(replayed)} mark(s) back to pending",
                        {"replayed": len(replayed), "kind": kind.value if kind else None})
        return 200, replay_summary(replayed, enqueued)

    return await answer(request, ctx, "ledger replay", work)
