"""`POST /advoware/calendar/sync` `{"kuerzel"?: "MM", "full"?: true}`: queue a calendar sync
of one employee (`calendar.sync.employee`) or of all (`calendar.sync.all`); answers 202.

Authenticated exactly like the Advoware proxy (services.proxy.advoware.authenticate): a named
caller's token from ADVOWARE_PROXY_TOKENS (or ADVOWARE_PROXY_TOKEN) as `Authorization: Bearer`,
compared in constant time; 503 when no caller is configured, 401 when missing/wrong (counted
per client address: 429 past the limit, its reason naming the seconds to wait; no Retry-After,
the real engine drops a returned result's headers, row H3); the caller's name is logged.
404 unknown Kürzel; 400 bad body.
The job is marked in the sync ledger before it is enqueued; when the ledger cannot be
written the answer is 503 and nothing is queued.
"""

from motia import http

from services.calendar.jobs import (
    API_PATH,
    TOPIC_SYNC_ALL,
    TOPIC_SYNC_EMPLOYEE,
    EmployeeSyncJob,
    RequestRejected,
    SyncAllJob,
    parse_request,
)
from services.platform.auth import client_address
from services.platform.container import get_ledger
from services.platform.ledger import LedgerError, mark_and_enqueue
from services.platform.models import SyncSource
from services.platform.settings import get_settings
from services.proxy.advoware import authenticate, limiter_for
from services.proxy.http import ProxyError
from src.glue.http import json_response

config = {
    "name": "Calendar Sync API",
    "description": "Queue a calendar sync (one employee or all, optionally a full resync)",
    "flows": ["advoware-calendar-sync"],
    "triggers": [http("POST", API_PATH)],
    "enqueues": [TOPIC_SYNC_ALL, TOPIC_SYNC_EMPLOYEE],
}


async def handler(request, ctx):
    settings = get_settings()
    headers = request.headers or {}
    try:
        caller = await authenticate(headers, settings, limiter_for(settings), client_address(headers))
    except ProxyError as exc:
        ctx.logger.warn(f"calendar sync request refused: {exc.reason}", {"status": exc.status})
        # No Retry-After/WWW-Authenticate: the real engine drops a returned result's headers (row
        # H3); the 429's reason says when to retry.
        return json_response(exc.status, exc.body())
    try:
        req = parse_request(request.body, request.query_params or {}, settings.calendar.mapping)
    except RequestRejected as exc:
        ctx.logger.warn(f"calendar sync request refused: {exc.reason}", {"status": exc.status})
        return json_response(exc.status, exc.body())
    if req.kuerzel is not None:
        job = EmployeeSyncJob(kuerzel=req.kuerzel, full=req.full, source=SyncSource.MANUAL)
        event = {"topic": TOPIC_SYNC_EMPLOYEE, "data": job.to_queue()}
        queued = {"topic": TOPIC_SYNC_EMPLOYEE, "employees": [req.kuerzel], "full": req.full}
    else:
        event = {"topic": TOPIC_SYNC_ALL, "data": SyncAllJob(full=req.full, source=SyncSource.MANUAL).to_queue()}
        queued = {"topic": TOPIC_SYNC_ALL, "employees": sorted(settings.calendar.mapping), "full": req.full}
    try:
        await mark_and_enqueue(get_ledger(), ctx, [event])
    except LedgerError as exc:
        ctx.logger.error(f"calendar sync request refused: the sync ledger is unavailable: {exc}", {"status": 503})
        return json_response(503, {"error": "sync ledger unavailable; nothing was queued, retry later"})
    ctx.logger.info("calendar sync queued", {**queued, "caller": caller})
    return json_response(202, {"queued": queued, "trace_id": ctx.trace_id})
