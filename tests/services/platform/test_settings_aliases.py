"""The developer guide's variable names are read, and unknown ADVOWARE_*/ESPOCRM_*/XAI_* variables
are named at start-up instead of being ignored silently (services/platform/settings/aliases.py)."""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

import pytest

from services.clients.errors import ConfigError
from services.platform import settings as cfg
from services.platform.settings import AppMode, load_settings
from services.platform.settings.aliases import guide_names, known_names, unknown_variables

GUIDE = Path("/work/shared/spec/developer-guide.md")
KEY_A = base64.b64encode(b"guide-secret").decode()
KEY_B = base64.b64encode(b"project-key").decode()


def test_the_guides_advoware_secret_is_read_as_the_api_key() -> None:
    s = load_settings({"APP_MODE": "sandbox", "ADVOWARE_API_SECRET": KEY_A})
    assert s.advoware.api_key_bytes() == b"guide-secret"
    assert not any("ADVOWARE_API_SECRET" in w for w in s.warnings)


def test_a_blank_project_name_counts_as_unset_and_the_guides_name_is_read() -> None:
    s = load_settings({"APP_MODE": "sandbox", "ADVOWARE_API_KEY": "  ", "ADVOWARE_API_SECRET": KEY_A})
    assert s.advoware.api_key_bytes() == b"guide-secret"


def test_the_projects_name_wins_and_startup_warns_without_the_values() -> None:
    s = load_settings({"APP_MODE": "sandbox", "ADVOWARE_API_KEY": KEY_B, "ADVOWARE_API_SECRET": KEY_A})
    assert s.advoware.api_key_bytes() == b"project-key"
    notes = [w for w in s.warnings if "ADVOWARE_API_SECRET" in w]
    assert len(notes) == 1 and "ADVOWARE_API_KEY" in notes[0]
    assert KEY_A not in " ".join(s.warnings) and KEY_B not in " ".join(s.warnings)


def test_the_guides_name_alone_makes_auto_mode_production() -> None:
    """Like ADVOWARE_API_KEY, a real credential under the guide's name is not the sandbox."""
    with pytest.raises(ConfigError) as info:
        load_settings({"ADVOWARE_API_SECRET": KEY_A})
    assert "production" in str(info.value)
    assert load_settings({}).mode is AppMode.SANDBOX


def test_redis_parts_take_the_guides_database_default() -> None:
    assert load_settings({"REDIS_HOST": "cache", "REDIS_PORT": "6390"}).redis_url == "redis://cache:6390/1"
    assert load_settings({"REDIS_HOST": "cache", "REDIS_DB_ADVOWARE_CACHE": "0"}).redis_url == "redis://cache:6379/0"
    assert load_settings({}).redis_url == "redis://127.0.0.1:6379/0"  # nothing set: REDIS_URL's default


def test_unknown_variables_are_named_once_without_values() -> None:
    env = {"APP_MODE": "sandbox", "ADVOWARE_APIKEY": "s3cr3t-value", "XAI_MAX_FILE_SIZE_MB": "512",
           "ESPOCRM_DEFAULT_PAGE_SIZE": "50", "ESPOCRM_API_TIMEOUT_SECONDS": "30", "ESPOCRM_EMPTY": " ", "GOOGLE_OTHER": "x"}
    s = load_settings(env)
    unknown = [w for w in s.warnings if "unknown" in w]
    assert len(unknown) == 1
    assert re.findall(r"[A-Z][A-Z0-9_]{3,}", unknown[0].split(":", 1)[1]) == ["ADVOWARE_APIKEY", "ESPOCRM_DEFAULT_PAGE_SIZE", "XAI_MAX_FILE_SIZE_MB"]
    assert "s3cr3t-value" not in unknown[0]
    assert not [w for w in load_settings({"APP_MODE": "sandbox"}).warnings if "unknown" in w]


def test_every_guide_variable_is_known() -> None:
    """Every ADVOWARE_/ESPOCRM_/XAI_/REDIS_/LOCK_ variable the guide sets in an env block is read."""
    guide = GUIDE.read_text() if GUIDE.exists() else ""
    if not guide:
        pytest.skip("the developer guide is not on this machine")
    names = set(re.findall(r"^((?:ADVOWARE|ESPOCRM|XAI|REDIS|LOCK)_[A-Z0-9_]+)=", guide, flags=re.M))
    names |= set(re.findall(r"getenv\('((?:ADVOWARE|ESPOCRM|XAI|REDIS|LOCK)_[A-Z0-9_]+)'", guide))
    names |= set(re.findall(r"_require_env\('([A-Z0-9_]+)'", guide))
    assert {"ADVOWARE_API_SECRET", "REDIS_DB_ADVOWARE_CACHE", "ESPOCRM_METADATA_TTL_SECONDS"} <= names
    assert sorted(names - known_names()) == []
    assert not unknown_variables(dict.fromkeys(names, "x"))
    assert guide_names() == {"ADVOWARE_API_SECRET": "ADVOWARE_API_KEY"}


def test_get_settings_logs_each_warning_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cfg, "read_environment", lambda: {"APP_MODE": "sandbox", "XAI_TYPO_KEY": "v4lue"})
    cfg.reset_settings_cache()
    try:
        with caplog.at_level(logging.WARNING, logger="services.platform.settings"):
            cfg.get_settings()
            cfg.get_settings()
    finally:
        cfg.reset_settings_cache()
    lines = [r.getMessage() for r in caplog.records if "XAI_TYPO_KEY" in r.getMessage()]
    assert len(lines) == 1 and "v4lue" not in lines[0]
