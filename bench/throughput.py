"""Throughput with production-like latencies (issue #16): the initial sync of 2,000 documents into
50 xAI collections and of 1,000 parties into Advoware, through the real stack — Redis, the
stand-in engine, the real worker over src/steps/vmh plus the ledger's sweeper cron, the
simulators with a latency profile (simulators/pacing.py) and xAI's rate limit (a token bucket
per key answering 429, with Retry-After on half of them, the others left to the client's backoff).

Phases, each timed from the first webhook until every record is synced:
- documents: 2,000 new documents (64 KiB each) linked round-robin to 50 entities whose
  collections exist (made before, not timed), xAI limited to 20 requests/s per key;
- documents_throttled: 500 more with xAI limited to 4 requests/s per key, so the rate limit
  binds: 429s arrive and must all be honoured (waited out, never a failure);
- parties: 1,000 new parties created in Advoware.
The records are loaded into the EspoCRM simulator directly (no webhook); the bench then posts
EspoCRM's `create` webhooks for them (batches of 50, as EspoCRM sends). A record is synced when
EspoCRM shows it (documents `xaiSyncStatus=clean`, parties `syncStatus=clean` with an
`advowareId`). After each phase the bench waits until no webhook or queued event is left, so
the echoes of our own write-backs are in the call counts.

The bound, side by side in the same run: every call is made inside a handler run of the kind,
a worker holds at most C runs of a kind at once (LEDGER_CONCURRENCY) and a run's calls follow
one another, so a kind finishes at most

    bound_latency = C / L   items/s,  L = Σ simulated latency of the calls answered (not 429)
                                      while the phase ran, per item (the simulators log it)

and xAI's token bucket lets through at most `rate` calls a second per key:

    bound_rate = rate / (calls answered on the busiest xAI key per document)

bound = min(bound_latency, bound_rate); ratio = measured / bound (goal >= 0.8). What the ratio
does not reach is the stack's own time (Redis, the engine, the worker's CPU) and time lost to
429s (their round trips and waits). failures = dead ledger marks (must be 0).

`--documents 200 --throttled-documents 50 --parties 100` is a quick run; the defaults are the
issue's sizes (about 8 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from call_budget import settle  # noqa: E402
from common import emit, session  # noqa: E402
from event_storm import ROOT, Harness  # noqa: E402

from iii_local.config import load_config  # noqa: E402
from services.platform.ledger.policies import SyncKind, with_concurrency  # noqa: E402
from services.platform.settings import load_settings  # noqa: E402
from simulators.base import STATE_KEY, RequestRecord  # noqa: E402
from simulators.espocrm import Attachment, state_of  # noqa: E402
from simulators.espocrm.model import generate_id  # noqa: E402

BATCH = 50
"""Items per webhook request (EspoCRM batches up to 50)."""


@dataclass(frozen=True)
class Latencies:
    """The simulators' latency profile (ms; per MiB of body moved)."""

    espocrm_ms: float = 80
    espocrm_ms_per_mib: float = 40
    advoware_ms: float = 120
    xai_ms: float = 150
    xai_upload_ms: float = 300
    xai_upload_ms_per_mib: float = 80
    google_ms: float = 100

    def profiles(self) -> dict[str, dict[str, Any]]:
        """Simulator name → `PUT /_sim/latency` body."""
        return {
            "espocrm": {"base_ms": self.espocrm_ms, "per_mib_ms": self.espocrm_ms_per_mib},
            "advoware": {"base_ms": self.advoware_ms},
            "xai": {"base_ms": self.xai_ms, "routes": [
                {"method": "POST", "path": "^/v1/files$", "base_ms": self.xai_upload_ms, "per_mib_ms": self.xai_upload_ms_per_mib}]},
            "google": {"base_ms": self.google_ms},
        }


def steps_dir() -> Path:
    """src/steps/vmh and the ledger's sweeper cron (production runs it: retries and events the
    engine lost come back through it), linked into one folder for the worker."""
    folder = Path(tempfile.mkdtemp(prefix="bench-steps-"))
    (folder / "vmh").symlink_to(ROOT / "src" / "steps" / "vmh")
    (folder / "ledger_sweep_cron_step.py").symlink_to(ROOT / "src" / "steps" / "system" / "ledger_sweep_cron_step.py")
    return folder


def api_calls(records: Iterable[RequestRecord], since: float, until: float = float("inf")) -> list[RequestRecord]:
    return [r for r in records if since <= r.ts <= until and not r.path.startswith("/_sim/")]


def xai_key_of(record: RequestRecord) -> str:
    """Which key's bucket an xAI call spent from (the log drops credentials): collections are
    called with the management key, files and search with the API key."""
    return "management" if record.path.startswith("/v1/collections") else "api"


class Phase:
    """Calls counted in the simulators' request logs for one timed phase."""

    def __init__(self, h: Harness, systems: list[str]) -> None:
        assert h.sims
        self.logs = {name: getattr(h.sims, f"{name}_app")[STATE_KEY].requests for name in systems}
        self.started = time.time()

    def calls(self, until: float = float("inf")) -> dict[str, list[RequestRecord]]:
        return {name: api_calls(log, self.started, until) for name, log in self.logs.items()}


def figures(prefix: str, items: int, elapsed: float, concurrency: int, during: dict[str, list[RequestRecord]],
            total: dict[str, list[RequestRecord]], rate: float | None) -> dict[str, Any]:
    """The phase's figures (see the module docstring for the bounds). `during`: the calls made
    until the last item was synced; `total`: also the echoes handled after it."""
    answered = {name: [r for r in calls if r.status != 429] for name, calls in during.items()}
    per_item_s = sum(r.latency_ms for calls in answered.values() for r in calls) / 1000 / items
    bound = bound_latency = concurrency / per_item_s if per_item_s else float("inf")
    out: dict[str, Any] = {
        f"{prefix}": items,
        f"{prefix}_s": elapsed,
        f"{prefix}_per_s": items / elapsed,
        f"{prefix}_calls_per_item": sum(1 for c in total.values() for r in c if r.status != 429) / items,
        **{f"{prefix}_{name}_calls_per_item": sum(1 for r in c if r.status != 429) / items for name, c in total.items()},
        f"{prefix}_concurrency": concurrency,
        f"{prefix}_latency_per_item_ms": per_item_s * 1000,
        f"{prefix}_bound_latency_per_s": bound_latency,
    }
    if rate is not None and "xai" in answered:
        busiest = max(Counter(xai_key_of(r) for r in answered["xai"]).values(), default=0) / items
        bound_rate = rate / busiest if busiest else float("inf")
        bound = min(bound_latency, bound_rate)
        out[f"{prefix}_xai_rate_limit_per_s"] = rate
        out[f"{prefix}_xai_busiest_key_calls_per_item"] = busiest
        out[f"{prefix}_bound_rate_limit_per_s"] = bound_rate
        out[f"{prefix}_limited_by"] = "xai rate limit" if bound_rate < bound_latency else "latency x concurrency"
    out[f"{prefix}_bound_per_s"] = bound
    out[f"{prefix}_ratio_to_bound"] = (items / elapsed) / bound if bound != float("inf") else float("nan")  # no latency: no bound
    out[f"{prefix}_429s"] = sum(1 for calls in total.values() for r in calls if r.status == 429)
    return out


async def post_webhooks(h: Harness, path: str, records: list[dict[str, Any]]) -> None:
    """EspoCRM's create webhooks for `records`, BATCH items per request, one request at a time."""
    assert h.tester
    async with session() as s:
        for start in range(0, len(records), BATCH):
            async with s.post(f"{h.tester.base_url}{path}", json=records[start : start + BATCH]) as r:
                body = await r.json()
                assert r.status == 200 and not body.get("rejected"), body


async def wait_synced(h: Harness, entity_type: str, ids: set[str], done: Callable[[dict[str, Any]], bool], timeout: float) -> float:
    """Poll the EspoCRM simulator's records in process (not through its API: not logged, not
    slowed) until every one of `ids` is `done`; returns that moment (time.time())."""
    assert h.sims
    records = state_of(h.sims.espocrm_app).entities.setdefault(entity_type, {})
    deadline = time.monotonic() + timeout
    while True:
        pending = [i for i in ids if not done(records.get(i) or {})]
        if not pending:
            return time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(ids)} {entity_type} not synced after {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def dead_marks(h: Harness, kind: SyncKind) -> int:
    from redis.asyncio import Redis

    client = Redis.from_url(h.settings.redis_url)
    try:
        return int(await client.zcard(f"{h.settings.ledger.key_prefix}:dead:{kind.value}"))
    finally:
        await client.aclose()


async def make_collections(h: Harness, count: int) -> list[str]:
    """`count` Raeumungsklagen (status Offen: the sandbox rule wants a collection) and their
    collections, made through the worker's collection step (not timed)."""
    assert h.sims and h.tester
    espo = state_of(h.sims.espocrm_app)
    ids = [generate_id() for _ in range(count)]
    espo.load_seed({"entities": {"Raeumungsklage": [{"id": i, "name": f"RK bench {n}", "status": "Offen"} for n, i in enumerate(ids)]}})
    for i in ids:
        await h.tester.enqueue("vmh.collection.ensure", {"entity_type": "Raeumungsklage", "entity_id": i, "action": "update"})
    await wait_synced(h, "Raeumungsklage", set(ids), lambda r: bool(r.get("xaiCollectionId")), timeout=120)
    return ids


def seed_documents(h: Harness, count: int, kib: int, entities: list[str]) -> list[dict[str, Any]]:
    """`count` new documents of `kib` KiB each (distinct bytes), linked round-robin to `entities`."""
    assert h.sims
    espo = state_of(h.sims.espocrm_app)
    docs, links = [], []
    for n in range(count):
        content = (f"Dokument {n} ".encode() * (kib * 1024 // 12 + 1))[: kib * 1024]
        att = Attachment(id=generate_id(), name=f"doc-{n}.txt", type="text/plain", content=content,
                         role="Attachment", related_type="CDokumente", field_name="file")
        espo.add_attachment(att)
        doc = {"id": generate_id(), "name": f"doc-{n}.txt", "fileId": att.id, "fileName": att.name,
               "md5sum": hashlib.md5(content).hexdigest(), "sha256": hashlib.sha256(content).hexdigest(),
               "fileStatus": "new", "xaiSyncStatus": "pending_sync"}
        docs.append(doc)
        links.append({"entityType": "CDokumente", "id": doc["id"], "link": "raeumungsklagen", "foreignId": entities[n % len(entities)]})
    espo.load_seed({"entities": {"CDokumente": docs}, "links": links})
    return [dict(espo.entities["CDokumente"][d["id"]]) for d in docs]


def seed_parties(h: Harness, count: int) -> list[dict[str, Any]]:
    assert h.sims
    espo = state_of(h.sims.espocrm_app)
    parties: list[dict[str, Any]] = []
    for n in range(count):
        last = f"Bench{n:05d}"
        parties.append({"id": generate_id(), "firstName": "Max", "lastName": last, "name": f"Max {last}",
                        "emailAddress": f"{last.lower()}@example.com", "addressCity": "Berlin",
                        "xaiCollectionEnabled": False, "syncStatus": "pending_sync"})
    espo.load_seed({"entities": {"CBeteiligte": parties}})
    return [dict(espo.entities["CBeteiligte"][p["id"]]) for p in parties]


async def set_pacing(h: Harness, latencies: Latencies, xai_limit: dict[str, Any] | None) -> None:
    assert h.sims
    async with session() as s:
        for name, profile in latencies.profiles().items():
            async with s.put(f"{getattr(h.sims, name).url}/_sim/latency", json=profile) as r:
                assert r.status == 200, await r.text()
        async with s.request("PUT" if xai_limit else "DELETE", f"{h.sims.xai.url}/_sim/rate-limit", json=xai_limit) as r:
            assert r.status == 200, await r.text()


async def document_phase(h: Harness, prefix: str, count: int, entities: list[str], args: argparse.Namespace,
                         latencies: Latencies, rate: float, concurrency: int) -> dict[str, Any]:
    docs = seed_documents(h, count, args.doc_kib, entities)
    limit = {"rate": rate, "burst": rate, "retry_after_share": args.retry_after_share} if rate else None
    await set_pacing(h, latencies, limit)
    phase = Phase(h, ["espocrm", "xai"])
    t0 = time.perf_counter()
    await post_webhooks(h, "/vmh/webhook/document/create", docs)
    done_at = await wait_synced(h, "CDokumente", {d["id"] for d in docs}, lambda r: r.get("xaiSyncStatus") == "clean", args.timeout)
    elapsed = time.perf_counter() - t0
    await settle(h)
    return figures(prefix, len(docs), elapsed, concurrency, phase.calls(done_at), phase.calls(), rate or None)


async def party_phase(h: Harness, args: argparse.Namespace, latencies: Latencies, concurrency: int) -> dict[str, Any]:
    parties = seed_parties(h, args.parties)
    await set_pacing(h, latencies, None)
    phase = Phase(h, ["espocrm", "advoware"])
    t0 = time.perf_counter()
    await post_webhooks(h, "/vmh/webhook/beteiligte/create", parties)
    done_at = await wait_synced(h, "CBeteiligte", {p["id"] for p in parties},
                                lambda r: r.get("syncStatus") == "clean" and bool(r.get("advowareId")), args.timeout)
    elapsed = time.perf_counter() - t0
    await settle(h)
    return figures("parties", len(parties), elapsed, concurrency, phase.calls(done_at), phase.calls(), None)


def engine_queue_concurrency() -> int:
    """The builtin queue adapter's `concurrency` in the shipped iii-config.yaml (its default)."""
    config = load_config(ROOT / "iii-config.yaml", env={})
    assert config.queue is not None
    return int(config.queue.concurrency)


async def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    latencies = Latencies(**{f.name: getattr(args, f.name) for f in fields(Latencies)})
    env = {"LEDGER_CONCURRENCY": args.ledger_concurrency} if args.ledger_concurrency else {}
    queue_concurrency = args.queue_concurrency or engine_queue_concurrency()
    env["III_QUEUE_CONCURRENCY"] = str(queue_concurrency)
    policies = with_concurrency(load_settings({"APP_MODE": "sandbox", **env}).ledger.concurrency)
    documents, parties = policies[SyncKind.DOCUMENT].concurrency, policies[SyncKind.PARTY].concurrency
    steps = steps_dir()
    h = await Harness(queue_defaults={"concurrency": queue_concurrency}, env=env, steps=steps).start()
    out: dict[str, Any] = {"engine_queue_concurrency": queue_concurrency, "latency_profile_ms": str(latencies.profiles()),
                           "collections": args.collections, "document_kib": args.doc_kib}
    try:
        if args.documents or args.throttled_documents:
            await set_pacing(h, Latencies(**{f.name: 0 for f in fields(Latencies)}), None)
            entities = await make_collections(h, args.collections)  # not timed, not paced
            await settle(h)
        if args.documents:
            out.update(await document_phase(h, "documents", args.documents, entities, args, latencies, args.xai_rate, documents))
        if args.throttled_documents:
            out.update(await document_phase(h, "documents_throttled", args.throttled_documents, entities, args, latencies,
                                            args.throttled_xai_rate, documents))
        if args.parties:
            out.update(await party_phase(h, args, latencies, parties))
        out["dead_marks"] = {k.value: n for k in SyncKind if (n := await dead_marks(h, k))}
    finally:
        await h.stop()
        shutil.rmtree(steps, ignore_errors=True)
    out["failures"] = sum(out["dead_marks"].values())
    out["xai_429s"] = sum(int(v) for k, v in out.items() if k.endswith("_429s"))
    out["target"] = "every ratio_to_bound >= 0.8; failures == 0 (every 429 honoured, no mark dead)"
    emit("throughput", out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Sync throughput at production-like latencies against its bound (see the module docstring).")
    p.add_argument("--documents", type=int, default=2000)
    p.add_argument("--collections", type=int, default=50)
    p.add_argument("--doc-kib", type=int, default=64, help="size of each document (KiB)")
    p.add_argument("--parties", type=int, default=1000)
    for f in fields(Latencies):  # --espocrm-ms, --xai-upload-ms-per-mib, ... (--xai-ms: calls other than uploads)
        p.add_argument("--" + f.name.replace("_", "-"), type=float, default=f.default)
    p.add_argument("--throttled-documents", type=int, default=500)
    p.add_argument("--xai-rate", type=float, default=20.0, help="xAI requests/s per key, documents phase (0: no limit)")
    p.add_argument("--throttled-xai-rate", type=float, default=4.0, help="xAI requests/s per key, throttled phase")
    p.add_argument("--retry-after-share", type=float, default=0.5, help="share of 429s with Retry-After")
    p.add_argument("--ledger-concurrency", default=os.environ.get("LEDGER_CONCURRENCY", ""),
                   help="LEDGER_CONCURRENCY for the worker, e.g. document:8,party:8 (default: the project's)")
    p.add_argument("--queue-concurrency", type=int, default=0, help="the engine queue's concurrency (default: iii-config.yaml's)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds a phase may take")
    return p


if __name__ == "__main__":
    asyncio.run(main())
