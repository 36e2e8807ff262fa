"""The deletion guard (services.platform.deletion_guard): the hourly budget shared by every
worker, the trip and the operator's confirm, tombstones, restore and the operators' command.
Each rule runs against both guards: the Redis one (the session's redis-server) and the local one."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.clients.errors import ValidationError
from services.platform.deletion_guard import (
    Deletion,
    DeletionGuard,
    LocalDeletionGuard,
    RedisDeletionGuard,
    System,
    Verdict,
    find_tombstone,
)
from services.platform.deletion_guard.__main__ import run
from services.platform.deletion_guard.restore import restore
from services.platform.settings import load_settings


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


Factory = Callable[..., DeletionGuard]


@pytest.fixture(params=["redis", "local"])
async def make_guard(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Factory]:
    client = aioredis.Redis.from_url(redis_url)

    def factory(max_per_hour: int = 3, clock: Callable[[], float] | None = None, prefix: str | None = None) -> DeletionGuard:
        kw: dict[str, Any] = {"max_per_hour": max_per_hour}
        if clock is not None:
            kw["clock"] = clock
        if request.param == "local":
            return LocalDeletionGuard(**kw)
        return RedisDeletionGuard(client, prefix=prefix or f"t{uuid.uuid4().hex[:8]}", **kw)

    yield factory
    await client.aclose()


def party(n: int) -> Deletion:
    return Deletion(
        System.ESPOCRM, "CBeteiligte", f"p{n}", f"party {n} gone",
        record={"id": f"p{n}", "lastName": f"Muster{n}"},
        related=[{"entity_type": "CBankverbindungen", "record": {"id": f"b{n}", "iban": "DE89370400440532013000"}}],
        retry={"topic": "vmh.beteiligte.update", "data": {"entity_id": f"p{n}"}},
    )  # fmt: skip


async def test_the_budget_is_admitted_then_the_guard_trips_and_holds(make_guard: Factory) -> None:
    guard = make_guard(max_per_hour=3)
    gates = [await guard.admit(party(n)) for n in range(5)]
    assert [g.verdict for g in gates] == [Verdict.ALLOWED] * 3 + [Verdict.HELD] * 2
    assert "more than 3 deletes within an hour" in (gates[3].why or "") and "tripped earlier" in (gates[4].why or "")
    status = await guard.status()
    assert status["tripped"] and status["deletes_last_hour"] == 3 and status["held"] == 2 and status["tombstones"] == 3
    assert [h["key"] for h in await guard.held()] == ["espocrm:CBeteiligte:p3", "espocrm:CBeteiligte:p4"]
    tombs = await guard.tombstones()
    assert [t["entity_id"] for t in tombs] == ["p2", "p1", "p0"]  # newest first
    assert tombs[0]["record"]["lastName"] == "Muster2" and tombs[0]["related"][0]["record"]["id"] == "b2"
    assert await find_tombstone(guard, tombs[1]["id"]) == tombs[1]


async def test_confirm_approves_the_held_deletes_and_clears_the_count(make_guard: Factory) -> None:
    guard = make_guard(max_per_hour=1)
    assert (await guard.admit(party(1))).verdict is Verdict.ALLOWED
    assert (await guard.admit(party(2))).verdict is Verdict.HELD
    assert (await guard.admit(party(3))).verdict is Verdict.HELD
    approved = await guard.confirm(["espocrm:CBeteiligte:p2"])
    assert [e["key"] for e in approved] == ["espocrm:CBeteiligte:p2"] and approved[0]["retry"]["data"] == {"entity_id": "p2"}
    assert (await guard.admit(party(2))).verdict is Verdict.APPROVED  # not counted
    assert (await guard.status())["deletes_last_hour"] == 0
    assert (await guard.admit(party(3))).verdict is Verdict.ALLOWED  # the trip is cleared: the budget again
    assert (await guard.admit(party(4))).verdict is Verdict.HELD
    assert [h["key"] for h in await guard.held()] == ["espocrm:CBeteiligte:p4"]
    assert len(await guard.confirm()) == 1  # all held
    await guard.reset()
    assert (await guard.status())["tripped"] is None


async def test_the_window_is_one_hour(make_guard: Factory) -> None:
    clock = Clock()
    guard = make_guard(max_per_hour=2, clock=clock)
    for n in range(2):
        assert (await guard.admit(party(n))).allowed
        clock.t += 1000
    clock.t += 1601  # the first delete is now more than an hour ago
    assert (await guard.admit(party(2))).verdict is Verdict.ALLOWED
    assert (await guard.admit(party(3))).verdict is Verdict.HELD


async def test_a_zero_budget_holds_every_delete(make_guard: Factory) -> None:
    guard = make_guard(max_per_hour=0)
    assert (await guard.admit(party(1))).verdict is Verdict.HELD
    await guard.confirm()
    assert (await guard.admit(party(1))).verdict is Verdict.APPROVED


async def test_workers_share_one_budget(redis_url: str) -> None:
    prefix = f"shared{uuid.uuid4().hex[:6]}"
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(3)]
    guards = [RedisDeletionGuard(c, max_per_hour=5, prefix=prefix) for c in clients]
    gates = await asyncio.gather(*(guards[n % 3].admit(party(n)) for n in range(30)))
    assert sum(g.allowed for g in gates) == 5
    assert (await guards[0].status())["held"] == 25
    for c in clients:
        await c.aclose()


def test_settings_configure_the_guard() -> None:
    env = {"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env"}
    assert load_settings(env).deletes.max_per_hour == 5
    s = load_settings({**env, "DELETE_GUARD_MAX_PER_HOUR": "12", "DELETE_GUARD_KEY_PREFIX": "dg", "DELETE_TOMBSTONES_KEEP": "50"})
    assert (s.deletes.max_per_hour, s.deletes.key_prefix, s.deletes.tombstones_keep) == (12, "dg", 50)


# --------------------------------------------------------------------------- restore


class Recorder:
    """A client that records its create calls and answers with new ids."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _new(self, name: str, *args: Any) -> dict[str, Any]:
        self.calls.append((name, args))
        return {"id": f"new{len(self.calls)}", "BetNr": 900 + len(self.calls), "Id": 50 + len(self.calls), "FrNr": 7000 + len(self.calls)}

    async def create_entity(self, entity_type: str, data: dict[str, Any], skip_duplicate_check: bool = False) -> dict[str, Any]:
        return self._new("create_entity", entity_type, data)

    async def create_party(self, data: dict[str, Any]) -> dict[str, Any]:
        return self._new("create_party", data)

    async def create_bank_account(self, betnr: int, data: dict[str, Any]) -> dict[str, Any]:
        return self._new("create_bank_account", betnr, data)

    async def create_appointment(self, data: dict[str, Any]) -> dict[str, Any]:
        return self._new("create_appointment", data)

    async def insert_event(self, calendar_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._new("insert_event", calendar_id, body)


async def test_restore_recreates_an_espocrm_party_with_its_bank_accounts() -> None:
    guard = LocalDeletionGuard()
    deletion = party(1)
    assert deletion.record is not None
    deletion.record.update({"advowareId": 1234, "createdAt": "2026-01-01 00:00:00", "syncStatus": "clean"})
    gate = await guard.admit(deletion)
    tomb = await find_tombstone(guard, str(gate.tombstone_id))
    assert tomb is not None
    espo = Recorder()
    created = await restore(tomb, espocrm=espo)
    (_, (etype, body)), (_, (btype, bank)) = espo.calls
    assert etype == "CBeteiligte" and body["advowareId"] == 1234 and body["syncStatus"] == "pending_sync"
    assert "id" not in body and "createdAt" not in body
    assert btype == "CBankverbindungen" and bank["beteiligteId"] == "new1" and "id" not in bank
    assert created == {"system": "espocrm", "entity_type": "CBeteiligte", "id": "new1", "related": ["new2"]}
    unlinked = Recorder()
    await restore(tomb, espocrm=unlinked, unlink=True)
    assert "advowareId" not in unlinked.calls[0][1][1]


async def test_restore_recreates_advoware_and_google_records() -> None:
    advo, google = Recorder(), Recorder()
    tomb = {"id": "t1", "system": "advoware", "entity_type": "Beteiligte", "entity_id": "12", "record": {"BetNr": 12, "Name": "X"},
            "related": [{"entity_type": "Bankverbindung", "record": {"Id": 3, "IBAN": "DE89370400440532013000"}}], "context": {}}
    assert await restore(tomb, advoware=advo) == {"system": "advoware", "entity_type": "Beteiligte", "id": "901", "related": ["52"]}
    assert advo.calls[1] == ("create_bank_account", (901, {"Id": 3, "IBAN": "DE89370400440532013000"}))
    event = {"id": "ev1", "etag": "x", "summary": "Termin", "start": {"date": "2026-03-02"}, "end": {"date": "2026-03-03"}}
    gtomb = {"id": "t2", "system": "google", "entity_type": "event", "entity_id": "ev1", "record": event, "context": {"calendar_id": "cal"}}
    await restore(gtomb, google=google)
    assert google.calls == [("insert_event", ("cal", {"summary": "Termin", "start": {"date": "2026-03-02"}, "end": {"date": "2026-03-03"}}))]
    with pytest.raises(ValidationError):
        await restore({**gtomb, "context": {}}, google=google)


# --------------------------------------------------------------------------- the command


class FakeLedger:
    def __init__(self) -> None:
        self.marked: list[dict[str, Any]] = []

    async def mark_events(self, events: list[dict[str, Any]]) -> list[Any]:
        self.marked.extend(events)
        return []


async def test_the_command_shows_confirms_restores_and_exports(tmp_path: Path) -> None:
    guard, ledger, espo = LocalDeletionGuard(max_per_hour=1), FakeLedger(), Recorder()
    for n in range(3):
        await guard.admit(party(n))

    async def cmd(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = await run(list(argv), out, guard=guard, ledger=ledger, clients={"espocrm": espo})
        return code, out.getvalue()

    code, text = await cmd("status")
    assert code == 0 and json.loads(text)["held"] == 2
    assert "espocrm:CBeteiligte:p1" in (await cmd("held"))[1]
    code, text = await cmd("confirm")
    assert "2 held delete(s) approved" in text and [e["data"]["entity_id"] for e in ledger.marked] == ["p1", "p2"]
    [line] = (await cmd("tombstones", "--json"))[1].splitlines()
    tomb = json.loads(line)
    assert (await cmd("restore", tomb["id"], "--dry-run"))[1].count('"lastName"') == 1 and espo.calls == []
    code, text = await cmd("restore", tomb["id"])
    assert code == 0 and "restored espocrm:CBeteiligte:p0 as espocrm CBeteiligte new1" in text
    assert (await cmd("restore", "nope"))[0] == 1
    target = tmp_path / "tombstones.jsonl"
    await cmd("export", str(target))
    assert [json.loads(x)["id"] for x in target.read_text().splitlines()] == [tomb["id"]]
