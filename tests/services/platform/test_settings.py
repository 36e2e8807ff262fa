"""services.platform.settings: modes, sandbox defaults, production requirements, one error naming every problem."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from services.clients.errors import ConfigError
from services.platform import settings as cfg
from services.platform.settings import (
    AppMode,
    CollectionRule,
    ConflictRule,
    WebhookAuthMode,
    get_settings,
    load_settings,
    read_environment,
    reset_settings_cache,
)

SECRETS = {
    "ESPOCRM_API_KEY": "espo-key-SECRET-111",
    "ESPOCRM_API_SECRET": "espo-hmac-SECRET-222",
    "ADVOWARE_API_KEY": base64.b64encode(b"advo-SECRET-333").decode(),
    "ADVOWARE_PASSWORD": "advo-pass-SECRET-444",
    "XAI_API_KEY": "xai-SECRET-555",
    "XAI_MANAGEMENT_KEY": "xai-mgmt-SECRET-666",
    "ADVOWARE_PROXY_TOKEN": "proxy-SECRET-777-0123456789abcdef012",
    "ESPOCRM_WEBHOOK_TOKEN": "hook-token-SECRET-888-0123456789abcdef",
}


@pytest.fixture
def sa_file(tmp_path: Path) -> Path:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "client_email": "x@y.iam", "private_key": "PEM"}))
    return path


@pytest.fixture
def prod_env(sa_file: Path) -> dict[str, str]:
    """A complete, valid production environment."""
    return {
        "APP_MODE": "production",
        "ESPOCRM_API_BASE_URL": "https://crm.example.com/api/v1/",
        "ADVOWARE_API_BASE_URL": "https://connector.example.net",
        "ADVOWARE_TOKEN_URL": "https://gateway.example.net/api/v1/Token",
        "ADVOWARE_APP_ID": "app-1",
        "ADVOWARE_KANZLEI": "k1",
        "ADVOWARE_DATABASE": "db1",
        "ADVOWARE_USER": "u1",
        "GOOGLE_SERVICE_ACCOUNT_FILE": str(sa_file),
        "CALENDAR_MAPPING": "MM:mm@firm.example",
        "ADVOWARE_PROXY_ALLOWED_PREFIXES": "GET:api/v1/advonet/Mitarbeiter",
        **SECRETS,
    }


def problems(exc: ConfigError) -> list[str]:
    lines = str(exc).splitlines()
    assert lines[0] == "Invalid configuration:"
    assert all(line.startswith("- ") for line in lines[1:])
    return [line[2:] for line in lines[1:]]


def config_error(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return problems(info.value)


# --------------------------------------------------------------------------- modes


def test_empty_env_is_sandbox_with_simulator_defaults() -> None:
    s = load_settings({})
    assert s.mode is AppMode.SANDBOX and s.is_sandbox and not s.is_production
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.lock_ttl_seconds == 1800
    assert s.espocrm.api_base_url == "http://127.0.0.1:3201/api/v1"
    assert s.espocrm.api_key.get_secret_value() == "sandbox-espocrm-key"
    assert s.espocrm.api_secret is None and not s.espocrm.uses_hmac
    assert s.advoware.api_base_url == "http://127.0.0.1:3202/"
    assert s.advoware.token_url == "http://127.0.0.1:3202/api/v1/Token"
    assert s.advoware.app_id == "sandbox-app"
    assert s.advoware.api_key_bytes() == b"sandbox-advoware-secret"
    assert (s.advoware.kanzlei, s.advoware.database, s.advoware.user) == ("sandbox", "advo", "sandbox")
    assert s.advoware.password.get_secret_value() == "sandbox"
    assert (s.advoware.role, s.advoware.product) == (2, 64)
    assert s.advoware.proxy_token is not None
    assert s.advoware.proxy_token.get_secret_value() == "sandbox-proxy-token-public-not-a-secret"
    assert s.advoware.proxy_max_body_bytes == 10 * 1024 * 1024
    assert s.xai.api_base_url == s.xai.management_base_url == "http://127.0.0.1:3203"
    assert s.xai.api_key.get_secret_value() == "sandbox-xai-key"
    assert s.xai.management_key.get_secret_value() == "sandbox-xai-management-key"
    assert s.google.calendar_base_url == "http://127.0.0.1:3204/calendar/v3"
    assert s.google.static_token is not None and s.google.static_token.get_secret_value() == "sandbox-google-token"
    assert s.calendar.mapping == {"MM": "mm@kanzlei.example", "AB": "ab@kanzlei.example", "CK": "ck@kanzlei.example"}
    assert (s.calendar.sync_past_days, s.calendar.sync_future_days) == (30, 180)
    assert s.calendar.conflict_rule is ConflictRule.NEWEST_WINS
    assert s.xai.collection_rules == {
        "Account": CollectionRule("status", "Active"),
        "Raeumungsklage": CollectionRule("status", "Offen"),
        "CBeteiligte": CollectionRule("xaiCollectionEnabled", "true"),
    }
    assert s.webhook_auth_mode is WebhookAuthMode.OPEN


def test_sandbox_urls_follow_simulator_ports() -> None:
    s = load_settings({"SIM_ESPOCRM_PORT": "4001", "SIM_ADVOWARE_PORT": "4002", "SIM_XAI_PORT": "4003", "SIM_GOOGLE_PORT": "4004"})
    assert s.espocrm.api_base_url == "http://127.0.0.1:4001/api/v1"
    assert s.advoware.token_url == "http://127.0.0.1:4002/api/v1/Token"
    assert s.xai.api_base_url == "http://127.0.0.1:4003"
    assert s.google.calendar_base_url == "http://127.0.0.1:4004/calendar/v3"
    assert s.simulators.google_port == 4004


@pytest.mark.parametrize("key", ["ESPOCRM_API_KEY", "ADVOWARE_API_KEY", "XAI_API_KEY"])
def test_auto_mode_switches_to_production_when_any_key_is_set(key: str) -> None:
    value = base64.b64encode(b"k").decode() if key == "ADVOWARE_API_KEY" else "k"
    errors = config_error({key: value})
    # production: the other credentials are now required, sandbox defaults are gone
    assert "ADVOWARE_PASSWORD is required in production mode" in errors
    assert "ESPOCRM_API_BASE_URL is required in production mode" in errors
    assert key + " is required in production mode" not in errors


def test_auto_mode_treats_empty_values_as_unset() -> None:
    s = load_settings({"ESPOCRM_API_KEY": "", "ADVOWARE_API_KEY": "  ", "XAI_API_KEY": "", "APP_MODE": "auto"})
    assert s.mode is AppMode.SANDBOX


def test_explicit_sandbox_keeps_given_values() -> None:
    s = load_settings({"APP_MODE": "sandbox", "ESPOCRM_API_KEY": "mine", "LOG_LEVEL": "debug"})
    assert s.mode is AppMode.SANDBOX
    assert s.espocrm.api_key.get_secret_value() == "mine"
    assert s.xai.api_key.get_secret_value() == "sandbox-xai-key"
    assert s.log_level == "DEBUG"


def test_complete_production_env_loads(prod_env: dict[str, str], sa_file: Path) -> None:
    s = load_settings(prod_env)
    assert s.mode is AppMode.PRODUCTION
    assert s.espocrm.api_base_url == "https://crm.example.com/api/v1"  # trailing slash stripped
    assert s.espocrm.uses_hmac
    assert s.advoware.api_base_url == "https://connector.example.net/"  # trailing slash added
    assert s.advoware.api_key_bytes() == b"advo-SECRET-333"
    # production defaults, not the simulators
    assert s.xai.api_base_url == "https://api.x.ai"
    assert s.xai.management_base_url == "https://management-api.x.ai"
    assert s.google.calendar_base_url == "https://www.googleapis.com/calendar/v3"
    assert s.google.token_url == "https://oauth2.googleapis.com/token"
    assert s.google.static_token is None and s.google.service_account_file == sa_file
    assert s.calendar.mapping == {"MM": "mm@firm.example"}
    assert s.webhook_auth_mode is WebhookAuthMode.TOKEN


def test_sandbox_defaults_do_not_apply_in_production(prod_env: dict[str, str]) -> None:
    for name in ("ADVOWARE_PROXY_TOKEN", "CALENDAR_MAPPING"):
        del prod_env[name]
    s = load_settings(prod_env)
    assert s.advoware.proxy_token is None
    assert s.calendar.mapping == {}
    assert s.google.static_token is None
    joined = " ".join(s.warnings)
    assert "ADVOWARE_PROXY_TOKEN" in joined and "CALENDAR_MAPPING" in joined
    # Nor do the sandbox's open webhooks: without webhook credentials production does not start.
    del prod_env["ESPOCRM_WEBHOOK_TOKEN"]
    errors = config_error(prod_env)
    assert len(errors) == 1 and errors[0].startswith("ESPOCRM_WEBHOOK_SECRETS or ESPOCRM_WEBHOOK_TOKEN is required in production mode")


@pytest.mark.parametrize(
    "name",
    [
        "ESPOCRM_API_BASE_URL",
        "ESPOCRM_API_KEY",
        "ADVOWARE_API_BASE_URL",
        "ADVOWARE_TOKEN_URL",
        "ADVOWARE_APP_ID",
        "ADVOWARE_API_KEY",
        "ADVOWARE_KANZLEI",
        "ADVOWARE_DATABASE",
        "ADVOWARE_USER",
        "ADVOWARE_PASSWORD",
        "XAI_API_KEY",
        "XAI_MANAGEMENT_KEY",
        "GOOGLE_SERVICE_ACCOUNT_FILE",
    ],
)
def test_each_missing_production_variable_is_named(prod_env: dict[str, str], name: str) -> None:
    del prod_env[name]
    assert config_error(prod_env) == [f"{name} is required in production mode"]


def test_empty_value_counts_as_missing(prod_env: dict[str, str]) -> None:
    prod_env["ESPOCRM_API_KEY"] = "   "
    assert config_error(prod_env) == ["ESPOCRM_API_KEY is required in production mode"]


def test_static_google_token_replaces_service_account_in_production(prod_env: dict[str, str]) -> None:
    del prod_env["GOOGLE_SERVICE_ACCOUNT_FILE"]
    prod_env["GOOGLE_CALENDAR_STATIC_TOKEN"] = "tok"
    s = load_settings(prod_env)
    assert s.google.uses_static_token
    assert any("STATIC_TOKEN" in w for w in s.warnings)


def test_all_problems_named_in_one_error(prod_env: dict[str, str]) -> None:
    del prod_env["ESPOCRM_API_KEY"]
    del prod_env["XAI_MANAGEMENT_KEY"]
    prod_env.update(
        {
            "REDIS_URL": "http://localhost:6379",
            "LOCK_TTL_SECONDS": "half an hour",
            "ADVOWARE_API_KEY": "not base64!!",
            "CALENDAR_CONFLICT_RULE": "google_wins",
            "ESPOCRM_API_TIMEOUT_SECONDS": "-5",
        }
    )
    errors = config_error(prod_env)
    assert "ESPOCRM_API_KEY is required in production mode" in errors
    assert "XAI_MANAGEMENT_KEY is required in production mode" in errors
    assert "REDIS_URL: not a redis:// URL" in errors
    assert any(e.startswith("LOCK_TTL_SECONDS:") for e in errors)
    assert any(e.startswith("ADVOWARE_API_KEY:") and "base64" in e for e in errors)
    assert any(e.startswith("CALENDAR_CONFLICT_RULE:") and "advoware_wins|newest_wins" in e for e in errors)
    assert any(e.startswith("ESPOCRM_API_TIMEOUT_SECONDS:") for e in errors)
    assert len(errors) == 7


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("APP_MODE", "prod", "auto|sandbox|production"),
        ("LOG_LEVEL", "loud", "expected one of"),
        ("REDIS_URL", "localhost:6379", "not a redis:// URL"),
        ("REDIS_URL", "redis://localhost:6379/zero", "must be a number"),
        ("LOCK_TTL_SECONDS", "0", "must be >= 1"),
        ("LOCK_TTL_SECONDS", "1.5", "expected an integer"),
        ("ESPOCRM_API_BASE_URL", "ftp://crm/api/v1", "not an http(s) URL"),
        ("ESPOCRM_API_BASE_URL", "http://crm:port/api", "invalid port"),
        ("ADVOWARE_API_KEY", "", None),  # empty in sandbox → default, no error
        ("ADVOWARE_API_KEY", "@@@", "base64"),
        ("ADVOWARE_TOKEN_REFRESH_MARGIN_SECONDS", "soon", "expected a number"),
        ("ADVOWARE_PROXY_MAX_BODY_BYTES", "-1", "must be >= 1"),
        ("ESPOCRM_API_TIMEOUT_SECONDS", "nan", "finite"),
        ("SIM_XAI_PORT", "70000", "between 1 and 65535"),
        ("CALENDAR_SYNC_PAST_DAYS", "-1", "between 0 and 3650"),
        ("ESPOCRM_WEBHOOK_SECRETS", "onlyid", "not webhookId:secret"),
        ("ESPOCRM_WEBHOOK_SECRETS", "a:1,a:2", "appears twice"),
        ("ESPOCRM_WEBHOOK_SECRETS", ":secret", "not webhookId:secret"),
        ("ESPOCRM_WEBHOOK_SECRETS", ",,", "no webhookId:secret entries"),
        ("CALENDAR_MAPPING", "MM", "not KÜRZEL:calendarId"),
        ("CALENDAR_MAPPING", "MM:,AB:ab@x", "not KÜRZEL:calendarId"),
        ("CALENDAR_MAPPING", ":mm@x", "not KÜRZEL:calendarId"),
        ("CALENDAR_MAPPING", "MM:a@x,MM:b@x", "Kürzel 'MM' appears twice"),
        ("CALENDAR_MAPPING", "MM:a@x,AB:a@x", "mapped to both"),
        ("XAI_COLLECTION_RULES", "Account", "not EntityType:field=value"),
        ("XAI_COLLECTION_RULES", "Account:status", "not EntityType:field=value"),
        ("XAI_COLLECTION_RULES", "Account:status=", "not EntityType:field=value"),
        ("XAI_COLLECTION_RULES", "Acc ount:status=x", "not EntityType:field=value"),
        ("XAI_COLLECTION_RULES", "Account:a=1;Account:b=2", "appears twice"),
        ("GOOGLE_SERVICE_ACCOUNT_FILE", "/nonexistent/sa.json", "cannot read"),
    ],
)
def test_malformed_values_are_named(name: str, value: str, fragment: str | None) -> None:
    env = {"APP_MODE": "sandbox", name: value}
    if fragment is None:
        load_settings(env)
        return
    errors = config_error(env)
    assert len(errors) == 1, errors
    assert errors[0].startswith(name), errors
    assert fragment in errors[0], errors


def test_webhook_secrets_parse_and_set_signature_mode() -> None:
    s = load_settings({"ESPOCRM_WEBHOOK_SECRETS": " hookA : s1:with:colons , hookB:s2 ,", "ESPOCRM_WEBHOOK_TOKEN": "t"})
    assert {k: v.get_secret_value() for k, v in s.espocrm.webhook_secrets.items()} == {
        "hookA": "s1:with:colons",
        "hookB": "s2",
    }
    assert s.webhook_auth_mode is WebhookAuthMode.SIGNATURE


def test_malformed_webhook_secret_is_not_echoed() -> None:
    errors = config_error({"ESPOCRM_WEBHOOK_SECRETS": "hook:ok,TOPSECRETVALUE"})
    assert "TOPSECRETVALUE" not in "\n".join(errors)
    assert "#2" in errors[0]


def test_secrets_never_in_repr_or_str(prod_env: dict[str, str]) -> None:
    prod_env["REDIS_URL"] = "redis://:redis-SECRET-999@redis.internal:6380/2"
    prod_env["ESPOCRM_WEBHOOK_SECRETS"] = "hook1:hook-SECRET-000"
    s = load_settings(prod_env)
    texts = [repr(s), str(s), repr(s.espocrm), str(s.advoware), repr(s.xai), str(s.summary()), s.model_dump_json()]
    for text in texts:
        assert "SECRET" not in text, text
    assert s.redis_url.endswith("@redis.internal:6380/2")
    assert s.redis_url_redacted == "redis://:***@redis.internal:6380/2"
    assert s.summary()["redis_url"] == s.redis_url_redacted
    # the values are there for whoever asks explicitly
    assert s.espocrm.webhook_secrets["hook1"].get_secret_value() == "hook-SECRET-000"
    assert s.advoware.password.get_secret_value() == SECRETS["ADVOWARE_PASSWORD"]


def test_secrets_not_in_config_error_message(prod_env: dict[str, str]) -> None:
    prod_env["REDIS_URL"] = "http://:pw-SECRET@host"
    prod_env["ADVOWARE_API_KEY"] = "SECRET###"
    del prod_env["XAI_API_KEY"]
    with pytest.raises(ConfigError) as info:
        load_settings(prod_env)
    assert "SECRET" not in str(info.value)


def test_settings_are_frozen() -> None:
    s = load_settings({})
    with pytest.raises(pydantic.ValidationError):
        s.lock_ttl_seconds = 5  # type: ignore[misc]


def test_redis_host_port_db_fallback() -> None:
    s = load_settings({"REDIS_HOST": "cache.local", "REDIS_PORT": "6390", "REDIS_DB_ADVOWARE_CACHE": "1"})
    assert s.redis_url == "redis://cache.local:6390/1"
    assert load_settings({"REDIS_HOST": "h"}).redis_url == "redis://h:6379/1"  # the guide's REDIS_DB_ADVOWARE_CACHE default
    # REDIS_URL wins over the parts
    s = load_settings({"REDIS_URL": "rediss://r:7000/3", "REDIS_HOST": "ignored"})
    assert s.redis_url == "rediss://r:7000/3"
    errors = config_error({"REDIS_PORT": "x"})
    assert errors[0].startswith("REDIS_PORT:")


def test_calendar_mapping_inline_trimmed() -> None:
    s = load_settings({"CALENDAR_MAPPING": " MM : mm@kanzlei.example , AB:ab@kanzlei.example,"})
    assert s.calendar.mapping == {"MM": "mm@kanzlei.example", "AB": "ab@kanzlei.example"}


def test_calendar_mapping_file(tmp_path: Path) -> None:
    good = tmp_path / "map.json"
    good.write_text(json.dumps({"MM": "mm@x", "AB": "ab@x"}))
    assert load_settings({"CALENDAR_MAPPING_FILE": str(good)}).calendar.mapping == {"MM": "mm@x", "AB": "ab@x"}

    dup = tmp_path / "dup.json"
    dup.write_text('{"MM": "a@x", "MM": "b@x"}')  # json.loads would silently keep the last one
    assert "appears twice" in config_error({"CALENDAR_MAPPING_FILE": str(dup)})[0]

    for content, fragment in [("[1, 2]", "JSON object"), ("{bad", "not valid JSON"), ('{"MM": 5}', "empty calendar id"), ("{}", "no entries")]:
        path = tmp_path / "x.json"
        path.write_text(content)
        errors = config_error({"CALENDAR_MAPPING_FILE": str(path)})
        assert errors[0].startswith("CALENDAR_MAPPING_FILE:") and fragment in errors[0], (content, errors)

    errors = config_error({"CALENDAR_MAPPING_FILE": str(good), "CALENDAR_MAPPING": "MM:mm@x"})
    assert "both set" in errors[0]


def test_service_account_file_validation(tmp_path: Path, prod_env: dict[str, str]) -> None:
    bad = tmp_path / "bad.json"
    for content, fragment in [("not json", "not valid JSON"), ('{"client_email": "x"}', "private_key"), ("[]", "not a service-account")]:
        bad.write_text(content)
        prod_env["GOOGLE_SERVICE_ACCOUNT_FILE"] = str(bad)
        errors = config_error(prod_env)
        assert len(errors) == 1 and errors[0].startswith("GOOGLE_SERVICE_ACCOUNT_FILE:") and fragment in errors[0]


def test_collection_rules_parse_and_match() -> None:
    s = load_settings({"XAI_COLLECTION_RULES": " Account : status = Active ; CBeteiligte:xaiCollectionEnabled=true ;"})
    assert s.xai.collection_rules == {
        "Account": CollectionRule("status", "Active"),
        "CBeteiligte": CollectionRule("xaiCollectionEnabled", "true"),
    }
    assert s.xai.should_have_collection("Account", {"status": "Active"})
    assert not s.xai.should_have_collection("Account", {"status": "Inactive"})
    assert not s.xai.should_have_collection("Account", {})
    assert s.xai.should_have_collection("CBeteiligte", {"xaiCollectionEnabled": True})
    assert not s.xai.should_have_collection("CBeteiligte", {"xaiCollectionEnabled": False})
    assert not s.xai.should_have_collection("Raeumungsklage", {"status": "Offen"})  # no rule → never

    from services.platform.models import EntityRecord, EntityType

    record = EntityRecord.model_validate({"id": "a1", "status": "Active"})
    assert s.xai.should_have_collection(EntityType.ACCOUNT, record)


def test_proxy_prefixes_parsed() -> None:
    s = load_settings({"ADVOWARE_PROXY_ALLOWED_PREFIXES": "/api/v1/Akten, api/v1/advonet/TermineActiveSync,,api/v1/Akten"})
    assert s.advoware.proxy_allowed_prefixes == ("api/v1/Akten", "api/v1/advonet/TermineActiveSync")


# --------------------------------------------------------------------------- .env and caching


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    import os

    for name in list(os.environ):
        if re.match(r"^(APP_|ESPOCRM_|ADVOWARE_|XAI_|GOOGLE_|CALENDAR_|REDIS_|LOCK_|LOG_LEVEL|SIM_)", name):
            monkeypatch.delenv(name)
    reset_settings_cache()
    yield monkeypatch
    reset_settings_cache()


def test_dotenv_file_is_read_and_real_env_wins(tmp_path: Path, clean_environ: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LOCK_TTL_SECONDS=600\nLOG_LEVEL=debug\n# comment\nCALENDAR_SYNC_PAST_DAYS=7\n")
    clean_environ.setenv("APP_ENV_FILE", str(env_file))
    clean_environ.setenv("LOG_LEVEL", "error")
    merged = read_environment()
    assert merged["LOCK_TTL_SECONDS"] == "600" and merged["LOG_LEVEL"] == "error"
    s = get_settings()
    assert (s.lock_ttl_seconds, s.log_level, s.calendar.sync_past_days) == (600, "ERROR", 7)
    # cached until reset
    clean_environ.setenv("LOCK_TTL_SECONDS", "900")
    assert get_settings() is s
    reset_settings_cache()
    assert get_settings().lock_ttl_seconds == 900


def test_get_settings_raises_config_error(tmp_path: Path, clean_environ: pytest.MonkeyPatch) -> None:
    clean_environ.setenv("APP_ENV_FILE", str(tmp_path / "missing.env"))
    clean_environ.setenv("APP_MODE", "production")
    with pytest.raises(ConfigError, match="ESPOCRM_API_KEY is required in production mode"):
        get_settings()


# --------------------------------------------------------------------------- .env.example


class _Recorder(dict):  # type: ignore[type-arg]
    """A mapping that remembers every variable name looked up."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seen: set[str] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)


def test_every_variable_is_documented_in_env_example(prod_env: dict[str, str]) -> None:
    example = (Path(cfg.PROJECT_ROOT) / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.M))
    seen: set[str] = set()
    for env in ({}, dict(prod_env), {"REDIS_HOST": "h", "CALENDAR_MAPPING_FILE": "/x"}):
        recorder = _Recorder(env)
        try:
            load_settings(recorder)
        except ConfigError:
            pass
        seen |= recorder.seen
    missing = sorted(seen - documented)
    assert not missing, f"not in .env.example: {missing}"
    for engine_var in ("III_REST_PORT", "III_WORKER_PORT", "III_DATA_DIR"):
        assert engine_var in documented


def test_env_example_values_load_in_sandbox() -> None:
    """Uncommenting the example's defaults (the ones without placeholders) still loads."""
    example = (Path(cfg.PROJECT_ROOT) / ".env.example").read_text()
    env: dict[str, str] = {}
    for name, value in re.findall(r"^#\s*([A-Z][A-Z0-9_]+)=(\S*)", example, flags=re.M):
        if name.startswith(("III_", "GOOGLE_SERVICE", "CALENDAR_MAPPING_FILE", "ESPOCRM_WEBHOOK_SECRETS", "REDIS_HOST", "REDIS_PORT", "REDIS_DB")):
            continue
        if "..." in value or name.endswith(("_URL",)) and "example" in value:
            continue
        env[name] = value
    env["APP_MODE"] = "sandbox"
    s = load_settings(env)
    assert s.lock_ttl_seconds == 1800 and s.advoware.proxy_max_body_bytes == 10485760


def test_lock_lease_is_validated_and_defaults_to_a_minute() -> None:
    assert load_settings({}).lock_lease_seconds == 60
    assert load_settings({"LOCK_LEASE_SECONDS": "10"}).lock_lease_seconds == 10
    with pytest.raises(ConfigError, match="LOCK_LEASE_SECONDS"):
        load_settings({"LOCK_LEASE_SECONDS": "1800", "LOCK_TTL_SECONDS": "1800"})
    with pytest.raises(ConfigError, match="LOCK_LEASE_SECONDS"):
        load_settings({"LOCK_LEASE_SECONDS": "1"})


def test_explicit_mapping_ignores_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic-settings would read os.environ by default: a given mapping is the only source."""
    monkeypatch.setenv("ESPOCRM_API_KEY", "from-os-environ")
    monkeypatch.setenv("LOCK_TTL_SECONDS", "not a number")
    s = load_settings({})
    assert s.mode is AppMode.SANDBOX
    assert s.espocrm.api_key.get_secret_value() == "sandbox-espocrm-key"
    assert s.lock_ttl_seconds == 1800


def test_sections_built_in_code_are_not_env_parsed() -> None:
    """Values given by field name are the caller's, not environment text: no URL/base64 parsing."""
    xai = cfg.XAISettings(api_base_url="u", management_base_url="u", api_key="k", management_key="k")
    assert xai.api_base_url == "u" and "Account" in xai.collection_rules
