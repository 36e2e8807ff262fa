"""POST /ops/ledger/replay `{"kind"?, "ids"?}`: put dead (or named) sync ledger marks back
to pending with a fresh attempt budget and enqueue them now. Without ids: every dead mark
(of `kind`). `Authorization: Bearer <OPS_TOKEN>`; 503 when unset."""

from motia import http

from services.platform.container import get_ledger
from services.platform.ledger import LedgerError, enqueue_marked
from services.platform.ledger.ops import OpsRejected, parse_replay_body, replay_summary
from services.platform.ledger.policies import all_topics
from src.glue.http import json_response
from src.glue.ops import check_token

config = {
    "name": "Ledger Ops Replay",
    "description": "Operators: replay dead sync ledger marks",
    "flows": ["system"],
    "triggers": [http("POST", "/ops/ledger/replay")],
    "enqueues": sorted(all_topics()),
}


async def handler(request, ctx):
    try:
        await check_token(request.headers)
        kind, ids = parse_replay_body(request.body)
        replayed = await get_ledger().replay(kind, ids)
    except OpsRejected as exc:
        ctx.logger.warn(f"ledger replay refused: {exc.reason}", {"status": exc.status})
        return json_response(exc.status, exc.body())
    except LedgerError as exc:
        return json_response(503, {"error": str(exc)})
    enqueued = await enqueue_marked(ctx, replayed)
    ctx.logger.info(f"ledger replay: {len(replayed)} mark(s) back to pending", {"replayed": len(replayed), "kind": kind.value if kind else None})
    return json_response(200, replay_summary(replayed, enqueued))
