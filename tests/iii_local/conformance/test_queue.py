"""Rows Q1-Q5: the builtin queue adapter of engine 0.8.3, through the real motia worker.

Paths are under `engine/src/` of iii-hq/iii at tag iii/v0.8.3. The steps are in
`queue_steps/builtin/`; they write what they did to a JSON-lines file outside the engine
(`queue_steps/deliveries.py`). Messages go in through an HTTP step calling `ctx.enqueue`
(the worker's own enqueue path) or the console's enqueue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from iii_local.config import QueueConfig
from iii_local.engine import Engine
from iii_local.queue import QueueModule
from iii_local.telemetry import TelemetryStore
from tests.iii_local.conformance.queue_support import QueueTester, max_overlap

STEPS = Path(__file__).parent / "queue_steps" / "builtin"
FUNCTIONS = 9
BACKOFF_MS = 300
SAVE_INTERVAL_MS = 3000


@pytest.fixture(scope="module")
async def tester(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[QueueTester]:
    log = tmp_path_factory.mktemp("queue-conformance") / "deliveries.jsonl"
    t = QueueTester(
        STEPS,
        env={"CONFORMANCE_LOG": str(log)},
        rest_timeout_ms=1000,
        queue_defaults={"max_attempts": 3, "backoff_ms": BACKOFF_MS, "concurrency": 10, "poll_interval_ms": 100,
                        "store_method": "file_based", "save_interval_ms": SAVE_INTERVAL_MS},
    )
    t.log = log
    await t.start(wait_functions=FUNCTIONS)
    try:
        yield t
    finally:
        await t.stop()


def spans(t: QueueTester, prefix: str, key: str) -> list[tuple[float, float]]:
    starts = t.deliveries(f"{prefix}.start")
    ends = {r[key]: r["t"] for r in t.deliveries(f"{prefix}.end")}
    return [(s["t"], ends[s[key]]) for s in starts]


async def test_q1_subscribers_of_a_topic_compete(tester: QueueTester) -> None:
    """Q1 — builtins/queue.rs 301-353 (`waiting_key`, `push`) and 559-625 (`subscribe`): one job
    list per topic, one worker per subscription popping from it. Two steps subscribe to
    cf.compete; 20 messages give 20 deliveries in all (not 40), each message exactly once."""
    n = 20
    for i in range(n):
        await tester.emit("cf.compete", {"n": i})
    await tester.wait_for("compete", n)
    await asyncio.sleep(0.5)  # a second copy would arrive within a poll or two
    await tester.wait_idle()
    got = tester.deliveries("compete")
    assert len(got) == n, f"{len(got)} deliveries for {n} messages"
    assert sorted(r["n"] for r in got) == list(range(n))
    assert {r["step"] for r in got} <= {"A", "B"}
    row = await tester.queue_row("cf.compete")
    assert len(row["subscribers"]) == 2 and row["depth"] == 0


async def test_trace_follows_the_message_into_its_delivery(tester: QueueTester) -> None:
    """modules/queue/queue.rs 61-77 (enqueue injects the caller's traceparent) and
    adapters/builtin/adapter.rs 57-68 (the job's span has it as parent): the HTTP request's
    trace goes on into the queue handler."""
    trace_id = (await tester.emit("cf.compete", {"n": 1000}))["trace_id"]
    got = await tester.wait_for("compete", n=1000)
    assert got[0]["trace_id"] == trace_id
    trace = await tester.trace(trace_id)
    assert [i["kind"] for i in trace["invocations"]].count("queue") == 1


async def test_q2_every_job_takes_the_adapter_attempts_and_doubling_backoff(tester: QueueTester) -> None:
    """Q2 — builtins/queue.rs 317-331 (`push` → `Job::new(.., self.config.max_attempts,
    self.config.backoff_ms, ..)`), 93-104 (`calculate_backoff` doubles), 464-504 (`nack`).
    The step declares maxRetries=8, a fixed 10 s backoff, delaySeconds=30 and
    visibilityTimeout=1: all ignored. It is attempted at once, exactly max_attempts=3 times,
    300 ms then 600 ms apart (plus up to one 100 ms poll), then dead."""
    t0 = time.time()
    await tester.emit("cf.retry", {"key": "q2"})
    attempts = await tester.wait_for("retry", 3, key="q2")
    await asyncio.sleep(1.5)  # an attempt budget of 9 would go on here
    assert len(tester.deliveries("retry", key="q2")) == 3
    times = [a["t"] for a in attempts]
    assert times[0] - t0 < 1.0, "delaySeconds is ignored"
    gap1, gap2 = times[1] - times[0], times[2] - times[1]
    assert 0.28 <= gap1 < 0.55, gap1
    assert 0.58 <= gap2 < 0.9, gap2
    dead = [d for d in await tester.dead_letters("cf.retry") if d["job"]["data"] == {"key": "q2"}]
    assert len(dead) == 1
    assert dead[0]["job"]["attempts_made"] == 3 and dead[0]["job"]["max_attempts"] == 3
    assert dead[0]["job"]["backoff_delay_ms"] == BACKOFF_MS


async def test_q2_concurrency_is_per_subscription(tester: QueueTester) -> None:
    """Q2 — builtins/queue.rs 597-613 and 757-833: each subscription's `Worker` has its own
    semaphore of the step's `concurrency`. Two subscribers with concurrency 1 on one topic:
    two deliveries run at once, never more."""
    for i in range(6):
        await tester.console("POST", "/_console/enqueue", {"topic": "cf.limited", "data": {"n": i}})
    await tester.wait_for("limited.end", 6)
    await tester.wait_idle()
    runs = spans(tester, "limited", "n")
    assert len(runs) == 6
    assert max_overlap(runs) == 2
    for step in ("A", "B"):
        mine = [(s["t"], e["t"]) for s, e in zip(tester.deliveries("limited.start", step=step), tester.deliveries("limited.end", step=step))]
        assert max_overlap(mine) <= 1, f"subscriber {step} ran two at once"


async def test_q2_fifo_is_one_group_per_subscription_and_ignores_message_group_id(tester: QueueTester) -> None:
    """Q2 — modules/queue/queue.rs 40-44 (`QueueInput` has only topic and data: Motia's
    messageGroupId is dropped), builtins/queue.rs 317-353 (`push` sets no group), 572-596 and
    835-945 (`GroupedFifoWorker`: every job in group "default"), 689-746 (inline retry: the
    failing job blocks the ones behind it). Two messageGroupIds do not run in parallel; all
    run one at a time in enqueue order, the failed one retried before the next starts."""
    for i in range(6):
        await tester.emit("cf.fifo", {"n": i, "fail_once": i == 1}, messageGroupId=f"g{i % 2}")
    await tester.wait_for("fifo.end", 6, timeout=15)
    starts = tester.deliveries("fifo.start")
    assert [s["n"] for s in starts] == [0, 1, 1, 2, 3, 4, 5]
    ends = tester.deliveries("fifo.end") + tester.deliveries("fifo.fail")
    ordered = sorted((s["t"], "s") for s in starts) + sorted((e["t"], "e") for e in ends)
    depth = 0
    for _, kind in sorted(ordered):
        depth += 1 if kind == "s" else -1
        assert depth <= 1, "two FIFO deliveries ran at once"
    fail = tester.deliveries("fifo.fail")[0]["t"]
    retry = [s["t"] for s in starts if s["n"] == 1][1]
    assert retry - fail >= BACKOFF_MS / 1000 - 0.05


async def test_q3_no_invocation_timeout_a_hung_handler_holds_its_slot(tester: QueueTester) -> None:
    """Q3 — engine/mod.rs 803-846 (`call` awaits `handle_invocation` without a timeout) and
    builtins/queue.rs 799-830 (the permit is held until the handler returns). The step
    (concurrency 1, visibilityTimeout 1 s; REST timeout 1 s) hangs 3 s: it is not cut off,
    not retried, and the next message waits for its slot."""
    await tester.console("POST", "/_console/enqueue", {"topic": "cf.hang", "data": {"key": "h1"}})
    await tester.wait_for("hang.start", key="h1")
    await tester.console("POST", "/_console/enqueue", {"topic": "cf.hang", "data": {"key": "h2"}})
    await asyncio.sleep(3.0)
    assert len(tester.deliveries("hang.start", key="h1")) == 1, "the hung delivery was retried"
    assert not tester.deliveries("hang.done", key="h1")
    assert not tester.deliveries("hang.start", key="h2"), "the slot was given away"
    row = await tester.queue_row("cf.hang")
    assert row["in_flight"] == 1 and row["depth"] == 1
    tester.release("h1")
    tester.release("h2")
    await tester.wait_for("hang.done", key="h2")
    assert len(tester.deliveries("hang.done", key="h1")) == 1


async def test_q4_dead_letters_are_kept_and_nothing_redrives_them(tester: QueueTester) -> None:
    """Q4 — builtins/queue.rs 313-315 (`dlq_key`), 506-529 (`move_to_dlq` pushes
    `{job, error, failed_at}`), modules/queue/queue.rs 46-79 (the only queue function is
    `enqueue`). The stand-in lists them for operators; no engine function, console call or
    CLI verb lists them for a step or redrives them."""
    await tester.emit("cf.retry", {"key": "q4"})
    await tester.wait_for("retry", 3, key="q4")
    await tester.wait_idle()
    dead = [d for d in await tester.dead_letters("cf.retry") if d["job"]["data"] == {"key": "q4"}]
    assert len(dead) == 1
    entry = dead[0]
    assert set(entry) == {"topic", "job", "error", "failed_at"} and entry["topic"] == "cf.retry"
    assert set(entry["job"]) == {"id", "queue", "data", "attempts_made", "max_attempts", "backoff_delay_ms",
                                 "created_at", "process_at", "group_id", "traceparent", "baggage"}
    assert entry["job"]["queue"] == "cf.retry" and entry["job"]["group_id"] is None
    assert "always failing q4" in entry["error"] and entry["error"].startswith("ErrorBody {")
    assert isinstance(entry["failed_at"], int) and entry["failed_at"] > 1e12  # milliseconds
    assert (await tester.queue_row("cf.retry"))["dead"] >= 1
    functions = (await tester.console("GET", "/_console/functions"))["functions"]
    assert not [f for f in functions if "dlq" in f["function_id"] or "redrive" in f["function_id"]]
    for path in ("/_console/dlq/replay", "/_console/dlq/redrive", "/_console/dlq/discard"):
        r = await tester.post(path, {"ids": [entry["job"]["id"]]})
        assert r.status in (404, 405), (path, r.status)
    await asyncio.sleep(0.3)
    assert len(tester.deliveries("retry", key="q4")) == 3


async def test_q5_file_based_saves_on_its_interval_and_strands_jobs_in_flight(tester: QueueTester) -> None:
    """Q5 — builtins/kv.rs 184-215 and 252-295, builtins/queue_kv.rs 132-247 (`file_based`
    writes what changed every save_interval_ms), builtins/queue.rs 221-295
    (`rebuild_from_storage` never looks at `queue:{topic}:active` again). With a 3 s
    interval: A is in flight and C waits when a save happens; D and E are enqueued right
    after it, then the engine and worker are SIGKILLed. After the restart C is delivered,
    D and E are gone, and A is never delivered again (it stays stranded in `active`)."""
    await tester.console("POST", "/_console/enqueue", {"topic": "cf.persist", "data": {"key": "A", "hang": True}})
    await tester.wait_for("persist.start", key="A")
    await tester.console("POST", "/_console/enqueue", {"topic": "cf.persist", "data": {"key": "C"}})
    saves = (await tester.console("GET", "/_console/queues"))["store"]["saves"]
    deadline = time.monotonic() + SAVE_INTERVAL_MS / 1000 + 3
    while (await tester.console("GET", "/_console/queues"))["store"]["saves"] == saves:
        assert time.monotonic() < deadline, "no save happened"
        await asyncio.sleep(0.05)
    for key in ("D", "E"):
        await tester.console("POST", "/_console/enqueue", {"topic": "cf.persist", "data": {"key": key}})
    store = (await tester.console("GET", "/_console/queues"))["store"]
    assert store["saves"] == saves + 1 and store["store_method"] == "file_based", store
    await tester.restart_engine(kill=True, functions=FUNCTIONS)

    await tester.wait_for("persist.done", key="C", timeout=15)
    await asyncio.sleep(1.5)
    assert len(tester.deliveries("persist.start", key="A")) == 1, "the job in flight at the crash came back"
    assert not tester.deliveries("persist.start", key="D") and not tester.deliveries("persist.start", key="E")
    row = await tester.queue_row("cf.persist")
    assert row["stranded"] == 1 and row["depth"] == 0 and row["in_flight"] == 0


async def _module(tmp_path: Path, **cfg: Any) -> QueueModule:
    q = QueueModule(Engine(TelemetryStore()), QueueConfig(**cfg), data_path=tmp_path / "queue_store")
    await q.start()
    return q


async def test_q5_nothing_is_written_between_saves_nor_at_shutdown(tmp_path: Path) -> None:
    """Q5 — builtins/kv.rs 184-250 (in_memory keeps nothing; file_based loads the last save),
    modules/module.rs 54-57 (the queue module has no `destroy`: no save at shutdown).
    In-process: a job for a topic without subscriber survives a restart only once saved."""
    q = await _module(tmp_path, store_method="file_based", save_interval_ms=60_000)
    await q.enqueue("orphan", {"n": 1})
    await q.stop()  # a clean stop, inside the interval
    q = await _module(tmp_path, store_method="file_based", save_interval_ms=100)
    assert q.adapter.topic_stats("orphan")["depth"] == 0
    await q.enqueue("orphan", {"n": 2})
    await asyncio.sleep(0.35)
    await q.stop()
    q = await _module(tmp_path, store_method="file_based", save_interval_ms=100)
    assert q.adapter.topic_stats("orphan")["depth"] == 1
    await q.stop()
    q = await _module(tmp_path / "mem", store_method="in_memory")
    await q.enqueue("orphan", {"n": 3})
    await asyncio.sleep(0.2)
    await q.stop()
    q = await _module(tmp_path / "mem", store_method="in_memory")
    assert q.adapter.topic_stats("orphan")["depth"] == 0
    assert not (tmp_path / "mem" / "queue_store").exists()
    await q.stop()


async def test_q5_restart_rules_of_rebuild_from_storage(tmp_path: Path) -> None:
    """Q5 — builtins/queue.rs 221-295 (`rebuild_from_storage`), queue_kv.rs 265-330 (lists).
    Saved lists: only due delayed jobs move to waiting; `active` is left as it is. No saved
    list at all: every saved job record is requeued (a record without lists is all the engine
    can go by). In-process, on the adapter's store."""
    from iii_local.queue_builtin import active_key, delayed_key, job_key, waiting_key
    from iii_local.queue_kv import QueueKvStore

    kv = QueueKvStore()
    for v in ("v1", "v2", "v3"):
        kv.lpush("l", v)
    assert kv.llen("l") == 3 and kv.rpop("l") == "v1" and kv.lrem("l", 1, "v2") == 1 and kv.rpop("l") == "v3"
    assert kv.rpop("l") is None and "l" not in kv.keys()

    q = await _module(tmp_path, store_method="file_based", save_interval_ms=50)
    b = q.adapter.queue  # type: ignore[union-attr]
    first, second, third = b.push("t", {"n": 1}), b.push("t", {"n": 2}), b.push("t", {"n": 3})
    assert b.pop("t").id == first  # type: ignore[union-attr]  # in flight at the "crash"
    assert b.pop("t").id == second  # type: ignore[union-attr]
    b.nack("t", second, "boom")  # retry due in backoff_ms (1000)
    await asyncio.sleep(0.2)
    await q.stop()
    q = await _module(tmp_path, store_method="file_based", save_interval_ms=50)
    kv = q.adapter.kv  # type: ignore[union-attr]
    assert kv.lrange(active_key("t")) == [first]
    assert kv.lrange(waiting_key("t")) == [third]
    assert kv.zrangebyscore(delayed_key("t"), 0, 2**62) == [second]
    # Lose the lists: the job records alone are requeued, the one in flight included.
    kv.lists.clear()
    kv.zsets.clear()
    kv._dirty_lists = kv._dirty_zsets = True
    await asyncio.sleep(0.2)
    await q.stop()
    q = await _module(tmp_path, store_method="file_based", save_interval_ms=50)
    kv = q.adapter.kv  # type: ignore[union-attr]
    assert sorted(kv.lrange(waiting_key("t"))) == sorted([first, third])
    assert kv.zrangebyscore(delayed_key("t"), 0, 2**62) == [second]
    assert kv.get_job(job_key("t", first)) is not None
    await q.stop()
