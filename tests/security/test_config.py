"""Configuration attacks and mistakes (issue #14, "Configuration and secrets"):

- APP_MODE=auto never means sandbox (whose defaults include the public sandbox proxy token)
  while an external URL points at another machine or the engine's REST bind is not loopback;
- production refuses http:// for EspoCRM, Advoware, xAI and Google, and refuses to start
  without webhook authentication (ESPOCRM_WEBHOOK_SECRETS or ESPOCRM_WEBHOOK_TOKEN), the real
  worker included;
- the replay window (ESPOCRM_WEBHOOK_REPLAY_SECONDS) is validated like every other value.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from services.clients.errors import ConfigError
from services.platform.settings import AppMode, WebhookAuthMode, load_settings
from tests.e2e import ROOT

PRODUCTION_URLS = {
    "ESPOCRM_API_BASE_URL": "https://crm.example.com/api/v1",
    "ADVOWARE_API_BASE_URL": "https://connector.example.net/",
    "ADVOWARE_TOKEN_URL": "https://gateway.example.net/api/v1/Token",
    "XAI_API_BASE_URL": "https://api.x.ai",
    "XAI_MANAGEMENT_BASE_URL": "https://management-api.x.ai",
    "GOOGLE_CALENDAR_BASE_URL": "https://www.googleapis.com/calendar/v3",
    "GOOGLE_TOKEN_URL": "https://oauth2.googleapis.com/token",
}


def production_env(**extra: str) -> dict[str, str]:
    """A complete production environment with a webhook token and no Advoware proxy callers."""
    return {
        "APP_MODE": "production",
        "APP_ENV_FILE": "/nonexistent/.env",
        **PRODUCTION_URLS,
        "ESPOCRM_API_KEY": "espo-key",
        "ADVOWARE_APP_ID": "app-1",
        "ADVOWARE_API_KEY": base64.b64encode(b"advo-key").decode(),
        "ADVOWARE_KANZLEI": "k1",
        "ADVOWARE_DATABASE": "db1",
        "ADVOWARE_USER": "u1",
        "ADVOWARE_PASSWORD": "advo-pass",
        "XAI_API_KEY": "xai-key",
        "XAI_MANAGEMENT_KEY": "xai-mgmt-key",
        "GOOGLE_CALENDAR_STATIC_TOKEN": "google-token",
        "CALENDAR_MAPPING": "MM:mm@firm.example",
        "ESPOCRM_WEBHOOK_TOKEN": "w" * 40,
        **extra,
    }


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    lines = str(info.value).splitlines()
    assert lines[0] == "Invalid configuration:"
    return [line.removeprefix("- ") for line in lines[1:]]


# ---------------------------------------------------------------- APP_MODE=auto


@pytest.mark.parametrize("name", sorted(PRODUCTION_URLS))
def test_auto_mode_is_never_sandbox_while_a_real_url_is_set(name: str) -> None:
    env = {"APP_ENV_FILE": "/nonexistent/.env", name: PRODUCTION_URLS[name]}
    errors = problems(env)  # production: the credentials are missing, the sandbox's demo ones are not used
    assert "ESPOCRM_API_KEY is required in production mode" in errors
    assert any(e.startswith("APP_MODE=auto means production here") and name in e for e in errors), errors
    # The simulators on this machine (what sandbox mode points at) keep auto in the sandbox.
    local = load_settings({"APP_ENV_FILE": "/nonexistent/.env", name: "http://127.0.0.1:3299/x"})
    assert local.mode is AppMode.SANDBOX


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "api.firm.example"])
def test_auto_mode_is_never_sandbox_on_a_rest_host_other_than_loopback(host: str) -> None:
    errors = problems({"APP_ENV_FILE": "/nonexistent/.env", "III_REST_HOST": host})
    assert "ADVOWARE_PASSWORD is required in production mode" in errors
    assert any("III_REST_HOST" in e and host in e for e in errors), errors


def test_auto_mode_stays_sandbox_on_loopback_and_an_explicit_sandbox_elsewhere_warns() -> None:
    for host in ("", "127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        s = load_settings({"APP_ENV_FILE": "/nonexistent/.env", "III_REST_HOST": host})
        assert s.mode is AppMode.SANDBOX, host
        assert not any("III_REST_HOST" in w for w in s.warnings), (host, s.warnings)
    s = load_settings({"APP_ENV_FILE": "/nonexistent/.env", "APP_MODE": "sandbox", "III_REST_HOST": "0.0.0.0"})
    assert s.mode is AppMode.SANDBOX
    assert any("III_REST_HOST (0.0.0.0) is not a loopback address" in w and "public demo tokens" in w for w in s.warnings), s.warnings


# ---------------------------------------------------------------- production: https only


@pytest.mark.parametrize("name", sorted(PRODUCTION_URLS))
def test_production_refuses_plain_http_for_external_systems(name: str) -> None:
    url = PRODUCTION_URLS[name].replace("https://", "http://user:pw-SECRET@", 1)
    errors = problems(production_env(**{name: url}))
    assert len(errors) == 1 and errors[0].startswith(f"{name}: production requires https://"), errors
    assert "SECRET" not in errors[0], "the URL's credentials must not be echoed"
    assert load_settings(production_env()).is_production  # the same env with https:// starts


# ---------------------------------------------------------------- production: webhook authentication


def test_production_refuses_to_start_with_open_webhooks() -> None:
    env = production_env()
    del env["ESPOCRM_WEBHOOK_TOKEN"]
    errors = problems(env)
    assert len(errors) == 1, errors
    assert "ESPOCRM_WEBHOOK_SECRETS" in errors[0] and "ESPOCRM_WEBHOOK_TOKEN" in errors[0]
    assert load_settings({**env, "ESPOCRM_WEBHOOK_SECRETS": "hook:secret"}).webhook_auth_mode is WebhookAuthMode.SIGNATURE
    # The sandbox keeps its open endpoints, with a warning.
    sandbox = load_settings({"APP_ENV_FILE": "/nonexistent/.env"})
    assert sandbox.webhook_auth_mode is WebhookAuthMode.OPEN
    assert any("without authentication" in w for w in sandbox.warnings), sandbox.warnings


def test_the_worker_refuses_to_start_in_production_without_webhook_authentication() -> None:
    """The real motia worker over src/steps stops at import with the one configuration message
    (the health step loads the settings at start-up) instead of serving open webhooks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "ADVOWARE_", "XAI_", "GOOGLE_", "APP_", "REDIS_", "CALENDAR_", "III_"))}
    env.update(production_env())
    del env["ESPOCRM_WEBHOOK_TOKEN"]
    env.update({"PYTHONPATH": str(ROOT), "III_URL": "ws://127.0.0.1:9", "OTEL_ENABLED": "false"})
    try:
        proc = subprocess.run([sys.executable, "-m", "motia.cli", "run", "--dir", "src"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=45)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker kept running in production without webhook authentication")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Invalid configuration" in out and "ESPOCRM_WEBHOOK_SECRETS or ESPOCRM_WEBHOOK_TOKEN" in out, out[-2000:]


# ---------------------------------------------------------------- the replay window


def test_replay_window_defaults_to_ten_minutes_and_is_validated() -> None:
    base = {"APP_ENV_FILE": "/nonexistent/.env", "APP_MODE": "sandbox"}
    assert load_settings(base).espocrm.webhook_replay_seconds == 600
    assert load_settings({**base, "ESPOCRM_WEBHOOK_REPLAY_SECONDS": "60"}).espocrm.webhook_replay_seconds == 60
    for bad in ("-1", "ten", "1.5", "90000"):
        errors = problems({**base, "ESPOCRM_WEBHOOK_REPLAY_SECONDS": bad})
        assert len(errors) == 1 and errors[0].startswith("ESPOCRM_WEBHOOK_REPLAY_SECONDS:"), (bad, errors)
    off = load_settings(production_env(ESPOCRM_WEBHOOK_SECRETS="hook:secret", ESPOCRM_WEBHOOK_REPLAY_SECONDS="0"))
    assert any("ESPOCRM_WEBHOOK_REPLAY_SECONDS=0" in w for w in off.warnings), off.warnings
