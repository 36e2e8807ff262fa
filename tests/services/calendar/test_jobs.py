"""Calendar sync step plumbing: auth, request parsing, payloads, and the thin steps'
handlers called directly with a mock context."""

from __future__ import annotations

import runpy
import time
from pathlib import Path

import pytest

from iii_local.testing import MockRequest, mock_context
from services.calendar.jobs import (
    TOPIC_SYNC_ALL,
    TOPIC_SYNC_EMPLOYEE,
    EmployeeSyncJob,
    RequestRejected,
    employee_jobs,
    parse_job,
    parse_request,
)
from services.clients.errors import ValidationError
from services.platform.models import SyncSource
from services.platform.settings import load_settings, reset_settings_cache

STEPS = Path(__file__).resolve().parents[3] / "src" / "steps" / "advoware_cal_sync"
MAPPING = {"MM": "mm@x", "AB": "ab@x"}


def test_parse_request():
    assert parse_request(None, {}, MAPPING).kuerzel is None
    req = parse_request({"kuerzel": "mm", "full": True}, {}, MAPPING)
    assert (req.kuerzel, req.full) == ("MM", True)
    req = parse_request(None, {"kuerzel": "AB", "full": "true"}, MAPPING)
    assert (req.kuerzel, req.full) == ("AB", True)
    for body, status in (({"kuerzel": "ZZ"}, 404), ({"x": 1}, 400), ([1], 400), ({"full": "maybe"}, 400)):
        with pytest.raises(RequestRejected) as e:
            parse_request(body, {}, MAPPING)
        assert e.value.status == status


def test_jobs():
    events = employee_jobs(MAPPING, full=True, source=SyncSource.CRON)
    assert [e["topic"] for e in events] == [TOPIC_SYNC_EMPLOYEE] * 2
    assert [e["data"]["kuerzel"] for e in events] == ["AB", "MM"]
    assert all(e["data"]["full"] and e["data"]["source"] == "cron" for e in events)
    job = parse_job(EmployeeSyncJob, events[0]["data"])
    assert job.kuerzel == "AB"
    with pytest.raises(ValidationError):
        parse_job(EmployeeSyncJob, {"kuerzel": "A B"})
    with pytest.raises(ValidationError):
        parse_job(EmployeeSyncJob, {})


API_TOKEN = "calendar-api-token-0123456789abcdef"  # ADVOWARE_PROXY_TOKEN: at least 32 bytes


@pytest.fixture
def sandbox_settings(monkeypatch, redis_url):
    # The steps mark their work in the sync ledger: the session's Redis, a private key prefix.
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("LEDGER_KEY_PREFIX", "calendar-jobs-test")
    monkeypatch.setenv("APP_MODE", "sandbox")
    monkeypatch.setenv("APP_ENV_FILE", "/nonexistent/.env")
    monkeypatch.setenv("ADVOWARE_PROXY_TOKEN", API_TOKEN)
    for var in ("CALENDAR_MAPPING", "CALENDAR_MAPPING_FILE"):
        monkeypatch.delenv(var, raising=False)
    reset_settings_cache()
    yield load_settings()
    reset_settings_cache()


def step(name: str) -> dict:
    return runpy.run_path(str(STEPS / name))


async def test_cron_step_queues_sync_all(sandbox_settings):
    mod = step("calendar_sync_cron_step.py")
    assert mod["config"]["triggers"][0].expression == "0 */15 * * * *"
    ctx = mock_context("cron")
    await mod["handler"](None, ctx)
    assert ctx.topics() == [TOPIC_SYNC_ALL] and ctx.enqueued[0]["data"]["source"] == "cron"


async def test_fan_out_step_queues_one_event_per_employee(sandbox_settings):
    mod = step("calendar_sync_all_event_step.py")
    ctx = mock_context()
    await mod["handler"]({"full": True, "source": "manual"}, ctx)
    assert ctx.topics() == [TOPIC_SYNC_EMPLOYEE] * 3
    assert sorted(e["data"]["kuerzel"] for e in ctx.enqueued) == ["AB", "CK", "MM"]
    assert all(e["data"]["full"] for e in ctx.enqueued)
    ctx = mock_context()
    await mod["handler"]({"full": "nonsense"}, ctx)  # invalid payload: dropped, logged
    assert ctx.enqueued == [] and ctx.logger.messages("error")


async def test_api_step(sandbox_settings):
    mod = step("calendar_sync_api_step.py")
    ctx = mock_context("http")
    resp = await mod["handler"](MockRequest(body={"kuerzel": "ck"}, headers={"authorization": f"Bearer {API_TOKEN}"}), ctx)
    assert resp.status == 202
    assert resp.body["queued"] == {"topic": TOPIC_SYNC_EMPLOYEE, "employees": ["CK"], "full": False}
    assert ctx.enqueued == [{"topic": TOPIC_SYNC_EMPLOYEE, "data": ctx.enqueued[0]["data"]}]
    assert ctx.enqueued[0]["data"]["kuerzel"] == "CK" and ctx.enqueued[0]["data"]["source"] == "manual"
    ctx = mock_context("http")
    resp = await mod["handler"](MockRequest(body=None, headers={"authorization": "Bearer nope"}), ctx)
    assert resp.status == 401 and ctx.enqueued == []


async def test_api_step_without_token_is_disabled(monkeypatch, sandbox_settings):
    no_token = sandbox_settings.model_copy(update={"advoware": sandbox_settings.advoware.model_copy(update={"proxy_token": None})})
    def fake_settings():
        return no_token

    fake_settings.cache_clear = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setattr("services.platform.settings.get_settings", fake_settings)
    mod = step("calendar_sync_api_step.py")
    ctx = mock_context("http")
    resp = await mod["handler"](MockRequest(body={}, headers={"authorization": "Bearer "}), ctx)
    assert resp.status == 503 and ctx.enqueued == []


async def test_employee_step_ignores_unmapped_and_invalid(sandbox_settings):
    mod = step("calendar_sync_event_step.py")
    ctx = mock_context()
    await mod["handler"]({"kuerzel": "ZZ"}, ctx)
    assert ctx.logger.messages("warn")
    ctx = mock_context()
    await mod["handler"]({"kuerzel": ""}, ctx)
    assert ctx.logger.messages("error")


async def test_api_step_takes_the_proxy_callers_and_limits_failures(monkeypatch, redis_url):
    """The calendar API authenticates like the Advoware proxy: named callers, failures limited per address."""
    named = "calendar-tool-token-0123456789abcdefghij"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("LEDGER_KEY_PREFIX", "calendar-jobs-test")
    monkeypatch.setenv("APP_MODE", "sandbox")
    monkeypatch.setenv("APP_ENV_FILE", "/nonexistent/.env")
    monkeypatch.setenv("ADVOWARE_PROXY_TOKENS", f"kalender:{named}")
    monkeypatch.setenv("ADVOWARE_PROXY_AUTH_FAILURE_LIMIT", "2")
    monkeypatch.delenv("ADVOWARE_PROXY_TOKEN", raising=False)
    reset_settings_cache()
    try:
        mod = step("calendar_sync_api_step.py")
        ctx = mock_context("http")
        resp = await mod["handler"](MockRequest(body={}, headers={"authorization": f"Bearer {named}"}), ctx)
        assert resp.status == 202 and any((data or {}).get("caller") == "kalender" for _, _, data in ctx.logger.records)
        address = f"198.51.100.{int(time.time()) % 250}"
        statuses = []
        for _ in range(3):
            resp = await mod["handler"](MockRequest(body={}, headers={"authorization": "Bearer wrong", "x-forwarded-for": address}), mock_context("http"))
            statuses.append(resp.status)
        assert statuses == [401, 401, 429]
        ctx = mock_context("http")
        resp = await mod["handler"](MockRequest(body={}, headers={"authorization": f"Bearer {named}", "x-forwarded-for": address}), ctx)
        assert resp.status == 429 and ctx.enqueued == []
    finally:
        reset_settings_cache()
