"""README "Operating it": the commands given instead of the guide's recipes that cannot work here
(`redis-cli KEYS "lock:*"`, `XINFO`, `iii_new.log`) are run as written and find what they promise."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from iii_local.telemetry import TelemetryStore
from services.calendar.sync import LOCK_STEP as CALENDAR_LOCK_STEP
from services.documents.collections import COLLECTION_LOCK_STEP
from services.documents.executor import DOCUMENT_SYNC_LOCK_STEP
from services.parties.events import BANK_LOCK_STEP, PARTY_LOCK_STEP
from services.platform.ledger.policies import SyncKind
from services.platform.ledger.store import Ledger
from services.platform.locks import entity_lock

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PARTY_CRON_LOCK_STEP = "beteiligte_sync_cron"  # src/steps/vmh/beteiligte_sync_cron_step.py STEP


def recipe(guide: str) -> str:
    """The second cell of the README row that starts with the guide's command."""
    row = next(line for line in README.splitlines() if line.startswith(f"| `{guide}"))
    return row.split(" | ", 1)[1].rstrip(" |").replace("\\|", "|")


def bash(command: str, redis_url: str) -> str:
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc
    return proc.stdout


def test_the_lock_recipe_names_every_lock_step_in_the_code() -> None:
    loop = re.search(r"`(for s in ([a-z_ ]+); do .*?done; done)`", recipe('redis-cli KEYS "lock:*"'))
    assert loop, recipe('redis-cli KEYS "lock:*"')
    steps = set(loop.group(2).split())
    assert steps == {DOCUMENT_SYNC_LOCK_STEP, COLLECTION_LOCK_STEP, PARTY_LOCK_STEP, BANK_LOCK_STEP, CALENDAR_LOCK_STEP, PARTY_CRON_LOCK_STEP}
    sites = subprocess.run(["grep", "-rn", "--include=*.py", "async with sync_lock(", "src"], cwd=ROOT, capture_output=True, text=True).stdout
    assert len(sites.splitlines()) == 5, f"a new lock site? add its step to README's lock recipe and here:\n{sites}"


async def test_the_lock_recipe_lists_a_held_lock_with_its_holder(redis_url: str) -> None:
    command = re.search(r"`(for s in .*?done; done)`", recipe('redis-cli KEYS "lock:*"'))
    assert command
    entity = uuid.uuid4().hex
    redis = Redis.from_url(redis_url)
    try:
        async with entity_lock(redis, DOCUMENT_SYNC_LOCK_STEP, "CDokumente", entity, ttl=60, lease=None) as lock:
            out = bash(command.group(1), redis_url)
            line = next(line for line in out.splitlines() if line.startswith(f"document_sync:CDokumente:{entity} "))
            key, holder, ms_left = line.split()
            assert holder == lock.owner and 0 < int(ms_left) <= 60_000
        assert f"document_sync:CDokumente:{entity}" not in bash(command.group(1), redis_url)
    finally:
        await redis.aclose()


async def test_the_ledger_recipe_shows_what_still_needs_a_sync(redis_url: str) -> None:
    cells = recipe("redis-cli XINFO STREAM vmh:document:sync")
    zrange = 'redis-cli -u "$REDIS_URL" ZRANGE ledger:due:document 0 -1 WITHSCORES'
    assert f"`{zrange}`" in cells and "`SMEMBERS ledger:retrying:document`" in cells and "`ZRANGE ledger:dead:document 0 -1`" in cells
    assert all(f"`{k.value}`" in cells for k in SyncKind)
    entity = uuid.uuid4().hex
    redis = Redis.from_url(redis_url)
    try:
        await Ledger(redis).mark(SyncKind.DOCUMENT, entity, "vmh.document.update", {"entity_id": entity})
        out = bash(zrange, redis_url).split()
        assert entity in out and out[out.index(entity) + 1].isdigit()
    finally:
        await redis.delete(f"ledger:mark:document:{entity}")
        await redis.zrem("ledger:due:document", entity)
        await redis.aclose()


def test_the_engine_log_recipe_finds_the_errors(tmp_path: Path) -> None:
    cells = recipe("tail -f iii_new.log")
    grep = re.search(r"`(grep '\"level\": \"error\"' data/engine.log.jsonl) \| tail -100`", cells)
    assert grep and "`iii-cli logs --level error -n 100`" in cells
    log = tmp_path / "data" / "engine.log.jsonl"
    log.parent.mkdir()
    store = TelemetryStore(log_file=str(log))
    store.engine_log("info", "all fine")
    store.engine_log("error", "it broke")
    proc = subprocess.run(["bash", "-c", grep.group(1)], cwd=tmp_path, capture_output=True, text=True, timeout=10)
    assert [line for line in proc.stdout.splitlines() if line] and "it broke" in proc.stdout and "all fine" not in proc.stdout


@pytest.mark.parametrize("guide", ["redis-cli KEYS", "redis-cli XINFO", "tail -f iii_new.log", "lsof -p", "curl -X POST .../_console/cron/trigger"])
def test_each_guide_recipe_has_its_replacement(guide: str) -> None:
    assert recipe(guide).strip()
