"""LEDGER_CONCURRENCY: runs of each ledger kind a worker holds at once, read with the other
settings at start-up and applied to the ledger's policies (the in-process limit of run_marked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iii_local.config import load_config
from services.clients.errors import ConfigError
from services.platform.container import ledger_from_settings
from services.platform.ledger.policies import MAX_CONCURRENCY, POLICIES, SyncKind, with_concurrency
from services.platform.settings import load_settings
from services.platform.settings.constants import ENGINE_QUEUE_CONCURRENCY_DEFAULT, PROJECT_ROOT


class StubRedis:
    """Enough of a Redis client for building a Ledger (no call is made)."""

    def register_script(self, source: str) -> Any:
        return lambda **_: None


def test_defaults_are_the_policy_table() -> None:
    s = load_settings({})
    assert s.ledger.concurrency == {}
    ledger = ledger_from_settings(s, StubRedis())
    for kind, policy in POLICIES.items():
        assert ledger.policy(kind).concurrency == policy.concurrency


def test_named_kinds_are_overridden_others_keep_their_default() -> None:
    s = load_settings({"LEDGER_CONCURRENCY": " document:3 , party:12,calendar_employee:1 "})
    assert s.ledger.concurrency == {"document": 3, "party": 12, "calendar_employee": 1}
    ledger = ledger_from_settings(s, StubRedis())
    assert ledger.policy(SyncKind.DOCUMENT).concurrency == 3
    assert ledger.policy(SyncKind.PARTY).concurrency == 12
    assert ledger.policy(SyncKind.CALENDAR_EMPLOYEE).concurrency == 1
    assert ledger.policy(SyncKind.COLLECTION).concurrency == POLICIES[SyncKind.COLLECTION].concurrency
    # The rest of the policy is untouched.
    assert ledger.policy(SyncKind.DOCUMENT).max_attempts == POLICIES[SyncKind.DOCUMENT].max_attempts
    assert POLICIES[SyncKind.DOCUMENT].concurrency != 3, "the default table itself must not change"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("documents:4", "unknown kind 'documents'"),
        ("document:0", "between 1 and"),
        (f"document:{MAX_CONCURRENCY + 1}", "between 1 and"),
        ("document:many", "expected an integer"),
        ("document:2,document:3", "appears twice"),
        ("document", "is not kind:n"),
    ],
)
def test_bad_values_stop_start_up_with_the_reason(value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"LEDGER_CONCURRENCY": value})
    assert "LEDGER_CONCURRENCY" in str(info.value) and reason in str(info.value)


def test_with_concurrency_refuses_what_the_settings_would() -> None:
    with pytest.raises(ValueError):
        with_concurrency({"nope": 2})
    with pytest.raises(ValueError):
        with_concurrency({"document": 0})
    assert with_concurrency({"bank_account": 5})[SyncKind.BANK_ACCOUNT].concurrency == 5


# --------------------------------------------------------------------------- the engine's queue


def test_a_kind_above_the_engine_queue_concurrency_stops_start_up() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"LEDGER_CONCURRENCY": "document:20,party:8"})
    assert "document is above III_QUEUE_CONCURRENCY (16)" in str(info.value)
    s = load_settings({"LEDGER_CONCURRENCY": "document:20", "III_QUEUE_CONCURRENCY": "20"})
    assert s.ledger.concurrency == {"document": 20} and s.ledger.engine_queue_concurrency == 20


@pytest.mark.parametrize("config", [PROJECT_ROOT / "iii-config.yaml", PROJECT_ROOT / "deploy" / "iii-config.production.yaml"])
def test_shipped_engine_configs_read_the_variable_and_never_cap_a_default(config: Path) -> None:
    """Both configs take the queue's concurrency from III_QUEUE_CONCURRENCY with the default the
    settings assume, and that default is at least every kind's default concurrency."""
    queue = load_config(config, env={}).queue
    assert queue is not None and queue.concurrency == ENGINE_QUEUE_CONCURRENCY_DEFAULT
    raised = load_config(config, env={"III_QUEUE_CONCURRENCY": "40"}).queue
    assert raised is not None and raised.concurrency == 40
    assert max(p.concurrency for p in POLICIES.values()) <= ENGINE_QUEUE_CONCURRENCY_DEFAULT
