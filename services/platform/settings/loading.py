"""Loading: the mode, the sandbox defaults, building every section from ONE mapping, and
collecting every problem of every section into one `ConfigError`:

    Invalid configuration:
    - ESPOCRM_API_KEY is required in production mode
    - REDIS_URL: not a redis:// URL

Rules: an empty or blank value (`VAR=`) counts as unset; APP_MODE=auto means sandbox only
when ESPOCRM_API_KEY, ADVOWARE_API_KEY and XAI_API_KEY are all unset, no external URL
(PRODUCTION_URL_VARIABLES) points at another machine and the engine's REST bind
(III_REST_HOST, default 127.0.0.1) is a loopback address; else production. Sandbox defaults
(the simulators on SIM_*_PORT and their demo keys, the public sandbox proxy token among them)
are laid over the production defaults only in sandbox mode. Production refuses to start with
an http:// external URL or without webhook authentication (ESPOCRM_WEBHOOK_SECRETS or
ESPOCRM_WEBHOOK_TOKEN). Messages name the variable and never echo a secret.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from services.clients.errors import ConfigError
from services.platform.settings.aliases import apply_guide_names, unknown_warning
from services.platform.settings.constants import (
    DEFAULT_ENV_FILE,
    DEFAULT_REST_HOST,
    ENV_FILE_VARIABLE,
    PRODUCTION_URL_VARIABLES,
    SANDBOX_CALENDAR_MAPPING,
    SANDBOX_OPS_TOKEN,
    SANDBOX_PROXY_ALLOWED_PREFIXES,
    SANDBOX_PROXY_TOKEN,
    WEBHOOK_TOKEN_MIN_LENGTH,
)
from services.platform.settings.parsers import EnvText
from services.platform.settings.sections import (
    AdvowareSettings,
    CalendarSettings,
    DeletionGuardSettings,
    EspoCRMSettings,
    GoogleSettings,
    LedgerSettings,
    OpsSettings,
    PartiesSettings,
    RuntimeSettings,
    Section,
    Settings,
    SimulatorSettings,
    XAISettings,
)
from services.platform.settings.values import AppMode, WebhookAuthMode, is_loopback_host

_AUTO_MODE_KEYS = ("ESPOCRM_API_KEY", "ADVOWARE_API_KEY", "XAI_API_KEY")
"""The variables whose presence makes APP_MODE=auto choose production."""

S = TypeVar("S", bound=Section)


def _set(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def _remote_url(url: str) -> bool:
    """Whether a URL points at another machine (an unparsable one counts as remote)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return True
    return not (host and is_loopback_host(host))


def rest_host(env: Mapping[str, str]) -> str:
    """The engine's REST bind address as the config resolves it (III_REST_HOST, default loopback)."""
    return _set(env, "III_REST_HOST") or DEFAULT_REST_HOST


def exposure_signs(env: Mapping[str, str]) -> list[str]:
    """What reaches beyond this machine: an external URL pointing at another machine, or a REST
    bind other than loopback (where the sandbox's public demo tokens must never apply)."""
    signs = [f"{k} points at another machine" for k in PRODUCTION_URL_VARIABLES if _set(env, k) and _remote_url(_set(env, k))]
    if not is_loopback_host(rest_host(env)):
        signs.append(f"III_REST_HOST ({rest_host(env)}) is not a loopback address")
    return signs


def production_signs(env: Mapping[str, str]) -> list[str]:
    """Why this environment is not a local sandbox (empty: it may be one): an API key set, or
    an `exposure_signs` reason."""
    return [f"{k} is set" for k in _AUTO_MODE_KEYS if _set(env, k)] + exposure_signs(env)


def resolve_mode(env: Mapping[str, str]) -> tuple[AppMode, str | None]:
    """The mode APP_MODE asks for, and an error message if APP_MODE is malformed. auto (or a
    malformed value) is sandbox only when `production_signs` finds nothing."""
    raw = (env.get("APP_MODE") or "").strip().lower() or "auto"
    error = None
    if raw == "sandbox":
        return AppMode.SANDBOX, None
    if raw == "production":
        return AppMode.PRODUCTION, None
    if raw != "auto":
        error = f"APP_MODE: expected one of auto|sandbox|production, got {raw!r}"
    return (AppMode.PRODUCTION if production_signs(env) else AppMode.SANDBOX), error


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
        "ADVOWARE_PROXY_TOKEN": SANDBOX_PROXY_TOKEN,
        "ADVOWARE_PROXY_ALLOWED_PREFIXES": SANDBOX_PROXY_ALLOWED_PREFIXES,
        "OPS_TOKEN": SANDBOX_OPS_TOKEN,
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
    advoware_values = loader.values(AdvowareSettings)
    if _set(env, "ADVOWARE_PROXY_TOKENS") and not _set(env, "ADVOWARE_PROXY_TOKEN"):
        advoware_values.pop("ADVOWARE_PROXY_TOKEN", None)  # named callers replace the public sandbox token
    advoware = loader.build(AdvowareSettings, advoware_values)
    xai = loader.build(XAISettings)
    google = loader.build(GoogleSettings)
    calendar_values = loader.values(CalendarSettings)
    if sandbox and not {"CALENDAR_MAPPING", "CALENDAR_MAPPING_FILE"} & set(calendar_values):
        calendar_values["CALENDAR_MAPPING"] = dict(SANDBOX_CALENDAR_MAPPING)
    calendar = loader.build(CalendarSettings, calendar_values)
    ledger = loader.build(LedgerSettings)
    deletes = loader.build(DeletionGuardSettings)
    ops = loader.build(OpsSettings)
    parties = loader.build(PartiesSettings)
    if not sandbox and google is not None and google.service_account_file is None and google.static_token is None:
        loader.errors.append("GOOGLE_SERVICE_ACCOUNT_FILE is required in production mode")
    if not sandbox:
        loader.errors += _production_problems(espocrm, advoware, xai, google)
        loader.errors += _short_tokens(espocrm, runtime)

    if loader.errors:
        if not sandbox and _set(env, "APP_MODE").lower() in ("", "auto"):
            loader.errors.append(f"APP_MODE=auto means production here ({'; '.join(production_signs(env))}); "
                                 "APP_MODE=sandbox runs against the simulators")
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
        deletes=deletes or DeletionGuardSettings.model_validate({}),
        ops=ops or OpsSettings.model_validate({}),
        parties=parties or PartiesSettings.model_validate({}),
        ops_token=runtime.ops_token,
        warnings=(*_warnings(mode, espocrm, advoware, google, calendar, env), *guide_notes, *unknown_warning(env)),
    )


def _short_tokens(espocrm: EspoCRMSettings | None, runtime: Any) -> list[str]:
    """Production refuses a guessable webhook URL token or operators' token (under 32 characters)."""
    tokens = {
        "ESPOCRM_WEBHOOK_TOKEN": espocrm.webhook_token if espocrm is not None else None,
        "OPS_TOKEN": getattr(runtime, "ops_token", None),
    }
    return [
        f"{name} is shorter than {WEBHOOK_TOKEN_MIN_LENGTH} characters; production refuses it (e.g. `openssl rand -hex 32`)"
        for name, token in tokens.items()
        if token is not None and len(token.get_secret_value()) < WEBHOOK_TOKEN_MIN_LENGTH
    ]


def _production_problems(
    espocrm: EspoCRMSettings | None, advoware: AdvowareSettings | None, xai: XAISettings | None, google: GoogleSettings | None
) -> list[str]:
    """What production refuses beyond missing values: an external URL that is not https://, and
    EspoCRM webhooks without authentication. Sections that failed to build are skipped."""
    urls: dict[str, str] = {}
    if espocrm is not None:
        urls["ESPOCRM_API_BASE_URL"] = espocrm.api_base_url
    if advoware is not None:
        urls.update(ADVOWARE_API_BASE_URL=advoware.api_base_url, ADVOWARE_TOKEN_URL=advoware.token_url)
    if xai is not None:
        urls.update(XAI_API_BASE_URL=xai.api_base_url, XAI_MANAGEMENT_BASE_URL=xai.management_base_url)
    if google is not None:
        urls.update(GOOGLE_CALENDAR_BASE_URL=google.calendar_base_url, GOOGLE_TOKEN_URL=google.token_url)
    problems = []
    for name, url in urls.items():
        parts = urlsplit(url)
        if parts.scheme != "https":
            problems.append(f"{name}: production requires https://, got {parts.scheme}://{parts.hostname or ''}")
    if espocrm is not None and espocrm.webhook_auth_mode is WebhookAuthMode.OPEN:
        problems.append(
            "ESPOCRM_WEBHOOK_SECRETS or ESPOCRM_WEBHOOK_TOKEN is required in production mode "
            "(EspoCRM webhooks are never accepted without authentication there)"
        )
    if advoware is not None and advoware.proxy_callers and not advoware.proxy_allowed_prefixes:
        problems.append(
            "ADVOWARE_PROXY_ALLOWED_PREFIXES is required in production mode while the Advoware proxy has callers "
            "(e.g. `GET:api/v1/advonet/Mitarbeiter,GET|POST|PUT|DELETE:api/v1/advonet/TermineActiveSync`)"
        )
    return problems


def _warnings(
    mode: AppMode,
    espocrm: EspoCRMSettings,
    advoware: AdvowareSettings,
    google: GoogleSettings,
    calendar: CalendarSettings,
    env: Mapping[str, str],
) -> list[str]:
    """Non-fatal remarks for the start-up log."""
    prod = mode is AppMode.PRODUCTION
    warnings: list[str] = []
    if prod and not calendar.mapping:
        warnings.append("CALENDAR_MAPPING is empty: calendar sync has no employees to sync")
    if not prod and exposure_signs(env):
        warnings.append(f"APP_MODE=sandbox although {'; '.join(exposure_signs(env))}: "
                        "the sandbox's public demo tokens apply where nothing else is set")
    token: SecretStr | None = espocrm.webhook_token
    auth = espocrm.webhook_auth_mode
    if auth is WebhookAuthMode.OPEN:  # sandbox only: production refuses to start
        warnings.append(
            "EspoCRM webhooks are accepted without authentication "
            "(set ESPOCRM_WEBHOOK_SECRETS or ESPOCRM_WEBHOOK_TOKEN)"
        )
    if auth is WebhookAuthMode.SIGNATURE and token is not None:
        warnings.append("ESPOCRM_WEBHOOK_TOKEN is set next to the webhook signature secrets: every webhook "
                        "needs a valid Signature AND the token in its URL")
    if prod and auth is WebhookAuthMode.TOKEN:
        warnings.append("webhooks are authenticated by a URL token only, which cannot detect a replayed "
                        "request: prefer EspoCRM's signatures (webhook secrets), which also refuse replays")
    if prod and auth is WebhookAuthMode.SIGNATURE and espocrm.webhook_replay_seconds == 0:
        warnings.append("ESPOCRM_WEBHOOK_REPLAY_SECONDS=0: a replayed signed webhook is accepted again")
    if not advoware.proxy_callers:
        warnings.append("ADVOWARE_PROXY_TOKENS and ADVOWARE_PROXY_TOKEN are unset: the Advoware proxy refuses every request")
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
