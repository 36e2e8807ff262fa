"""Loading: the mode, the sandbox defaults, building every section from ONE mapping, and
collecting every problem of every section into one `ConfigError`:

    Invalid configuration:
    - ESPOCRM_API_KEY is required in production mode
    - REDIS_URL: not a redis:// URL

Rules: an empty or blank value (`VAR=`) counts as unset; APP_MODE=auto means sandbox when
ESPOCRM_API_KEY, ADVOWARE_API_KEY and XAI_API_KEY are all unset, else production; sandbox
defaults (the simulators on SIM_*_PORT and their demo keys) are laid over the production
defaults only in sandbox mode; messages name the variable and never echo a secret.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr, ValidationError

from services.clients.errors import ConfigError
from services.platform.settings.aliases import apply_guide_names, unknown_warning
from services.platform.settings.constants import (
    DEFAULT_ENV_FILE,
    ENV_FILE_VARIABLE,
    SANDBOX_CALENDAR_MAPPING,
    WEBHOOK_TOKEN_MIN_LENGTH,
)
from services.platform.settings.parsers import EnvText
from services.platform.settings.sections import (
    AdvowareSettings,
    CalendarSettings,
    EspoCRMSettings,
    GoogleSettings,
    LedgerSettings,
    RuntimeSettings,
    Section,
    Settings,
    SimulatorSettings,
    XAISettings,
)
from services.platform.settings.values import AppMode

_AUTO_MODE_KEYS = ("ESPOCRM_API_KEY", "ADVOWARE_API_KEY", "XAI_API_KEY")
"""The variables whose presence makes APP_MODE=auto choose production."""

S = TypeVar("S", bound=Section)


def resolve_mode(env: Mapping[str, str]) -> tuple[AppMode, str | None]:
    """The mode APP_MODE asks for, and an error message if APP_MODE is malformed."""
    raw = (env.get("APP_MODE") or "").strip().lower() or "auto"
    error = None
    if raw == "sandbox":
        return AppMode.SANDBOX, None
    if raw == "production":
        return AppMode.PRODUCTION, None
    if raw != "auto":
        error = f"APP_MODE: expected one of auto|sandbox|production, got {raw!r}"
    has_keys = any((env.get(k) or "").strip() for k in _AUTO_MODE_KEYS)
    return (AppMode.PRODUCTION if has_keys else AppMode.SANDBOX), error


def sandbox_defaults(sims: SimulatorSettings) -> dict[str, Any]:
    """What an unset variable means in sandbox mode: the local simulators and their demo keys."""
    espo = f"http://127.0.0.1:{sims.espocrm_port}"
    advo = f"http://127.0.0.1:{sims.advoware_port}"
    xai = f"http://127.0.0.1:{sims.xai_port}"
    google = f"http://127.0.0.1:{sims.google_port}"
    return {
        "ESPOCRM_API_BASE_URL": f"{espo}/api/v1",
        "ESPOCRM_API_KEY": "sandbox-espocrm-key",
        "ADVOWARE_API_BASE_URL": f"{advo}/",
        "ADVOWARE_TOKEN_URL": f"{advo}/api/v1/Token",
        "ADVOWARE_APP_ID": "sandbox-app",
        "ADVOWARE_API_KEY": base64.b64encode(b"sandbox-advoware-secret").decode(),
        "ADVOWARE_KANZLEI": "sandbox",
        "ADVOWARE_DATABASE": "advo",
        "ADVOWARE_USER": "sandbox",
        "ADVOWARE_PASSWORD": "sandbox",
        "ADVOWARE_PROXY_TOKEN": "sandbox-proxy-token",
        "XAI_API_BASE_URL": xai,
        "XAI_MANAGEMENT_BASE_URL": xai,
        "XAI_API_KEY": "sandbox-xai-key",
        "XAI_MANAGEMENT_KEY": "sandbox-xai-management-key",
        "GOOGLE_CALENDAR_BASE_URL": f"{google}/calendar/v3",
        "GOOGLE_TOKEN_URL": f"{google}/token",
        "GOOGLE_CALENDAR_STATIC_TOKEN": "sandbox-google-token",
    }


class _Loader:
    """Builds the sections from one mapping, collecting every section's problems."""

    def __init__(self, env: Mapping[str, str], mode: AppMode) -> None:
        self.env = env
        self.mode = mode
        self.errors: list[str] = []
        self.defaults: dict[str, Any] = {}
        """Sandbox defaults: environment text too, parsed like a value that was set."""

    def values(self, section: type[Section]) -> dict[str, Any]:
        """The section's variables that are set (blank = unset), over the mode's defaults."""
        result: dict[str, Any] = {}
        for name in section.env_names():
            raw = self.env.get(name)
            value = raw.strip() if raw is not None else ""
            if value:
                result[name] = EnvText(value)
            elif name in self.defaults:
                default = self.defaults[name]
                result[name] = EnvText(default) if isinstance(default, str) else default
        return result

    def build(self, section: type[S], values: dict[str, Any] | None = None) -> S | None:
        try:
            return section(**(self.values(section) if values is None else values))
        except ValidationError as exc:
            self.errors.extend(self.problems(exc))
            return None

    def problems(self, exc: ValidationError) -> list[str]:
        """pydantic's errors as `NAME: message` lines (never the input value)."""
        suffix = " in production mode" if self.mode is AppMode.PRODUCTION else ""
        lines: list[str] = []
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
            name = str(error["loc"][0]) if error["loc"] else ""
            if error["type"] == "missing":
                lines.append(f"{name} is required{suffix}")
                continue
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{name}: {message}" if name else message)
        return lines


def build_settings(env: Mapping[str, str]) -> Settings:
    """Validated settings from exactly `env` (nothing else is read); ConfigError names every problem."""
    env, guide_notes = apply_guide_names(env)  # the developer guide's names (aliases.py)
    mode, mode_error = resolve_mode(env)
    loader = _Loader(env, mode)
    if mode_error:
        loader.errors.append(mode_error)
    sandbox = mode is AppMode.SANDBOX

    sims = loader.build(SimulatorSettings)
    if sandbox:
        loader.defaults = sandbox_defaults(sims or SimulatorSettings.model_validate({}))
    runtime_values = loader.values(RuntimeSettings)
    if "REDIS_URL" in runtime_values:  # REDIS_URL wins; the parts are not even looked at
        for part in ("REDIS_HOST", "REDIS_PORT", "REDIS_DB_ADVOWARE_CACHE"):
            runtime_values.pop(part, None)
    runtime = loader.build(RuntimeSettings, runtime_values)
    espocrm = loader.build(EspoCRMSettings)
    advoware = loader.build(AdvowareSettings)
    xai = loader.build(XAISettings)
    google = loader.build(GoogleSettings)
    calendar_values = loader.values(CalendarSettings)
    if sandbox and not {"CALENDAR_MAPPING", "CALENDAR_MAPPING_FILE"} & set(calendar_values):
        calendar_values["CALENDAR_MAPPING"] = dict(SANDBOX_CALENDAR_MAPPING)
    calendar = loader.build(CalendarSettings, calendar_values)
    ledger = loader.build(LedgerSettings)
    if not sandbox and google is not None and google.service_account_file is None and google.static_token is None:
        loader.errors.append("GOOGLE_SERVICE_ACCOUNT_FILE is required in production mode")

    if loader.errors:
        raise ConfigError("Invalid configuration:\n- " + "\n- ".join(loader.errors))
    assert sims and runtime and espocrm and advoware and xai and google and calendar and ledger  # no errors → all built
    return Settings(
        mode=mode,
        log_level=runtime.log_level,
        redis_url=runtime.effective_redis_url,
        lock_ttl_seconds=runtime.lock_ttl_seconds,
        lock_lease_seconds=runtime.lock_lease_seconds,
        espocrm=espocrm,
        advoware=advoware,
        xai=xai,
        google=google,
        calendar=calendar,
        simulators=sims,
        ledger=ledger,
        ops_token=runtime.ops_token,
        warnings=(*_warnings(mode, espocrm, advoware, google, calendar), *guide_notes, *unknown_warning(env)),
    )


def _warnings(
    mode: AppMode,
    espocrm: EspoCRMSettings,
    advoware: AdvowareSettings,
    google: GoogleSettings,
    calendar: CalendarSettings,
) -> list[str]:
    """Non-fatal remarks for the start-up log."""
    prod = mode is AppMode.PRODUCTION
    warnings: list[str] = []
    if prod and not calendar.mapping:
        warnings.append("CALENDAR_MAPPING is empty: calendar sync has no employees to sync")
    token: SecretStr | None = espocrm.webhook_token
    if prod and not espocrm.webhook_secrets and token is None:
        warnings.append(
            "EspoCRM webhooks are accepted without authentication "
            "(set ESPOCRM_WEBHOOK_SECRETS or ESPOCRM_WEBHOOK_TOKEN)"
        )
    if prod and token is not None and len(token.get_secret_value()) < WEBHOOK_TOKEN_MIN_LENGTH:
        warnings.append(
            f"ESPOCRM_WEBHOOK_TOKEN is shorter than {WEBHOOK_TOKEN_MIN_LENGTH} characters (e.g. `openssl rand -hex 32`)"
        )
    if advoware.proxy_token is None:
        warnings.append("ADVOWARE_PROXY_TOKEN is unset: the Advoware proxy refuses every request")
    if prod and google.static_token is not None:
        warnings.append("GOOGLE_CALENDAR_STATIC_TOKEN is set in production: the service account is not used")
    return warnings


def read_environment(env_file: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """`os.environ` merged over the dotenv file (APP_ENV_FILE, else `<project>/.env`; the real environment wins)."""
    from dotenv import dotenv_values

    path = Path(env_file) if env_file else Path(os.environ.get(ENV_FILE_VARIABLE) or DEFAULT_ENV_FILE)
    merged: dict[str, str] = {}
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged
