"""All settings from the environment, validated once at start-up (`pydantic-settings`).

`load_settings()` reads the process environment merged over the project's `.env`
(python-dotenv; the real environment wins; APP_ENV_FILE names another file) and returns a
frozen `Settings`, or raises `ConfigError` with ONE message naming every missing or
malformed variable:

    Invalid configuration:
    - ESPOCRM_API_KEY is required in production mode
    - REDIS_URL: not a redis:// URL

Mode (`APP_MODE` = auto | sandbox | production, default auto): auto means sandbox only when
ESPOCRM_API_KEY, ADVOWARE_API_KEY and XAI_API_KEY are all unset, no external URL points at
another machine and III_REST_HOST is loopback, else production (loading.production_signs).
Production also refuses http:// external URLs and unauthenticated webhooks.
Sandbox defaults (the local simulators on SIM_*_PORT and their demo keys) apply ONLY in
sandbox mode; in production the credentials are required. An empty value (`VAR=`)
counts as unset everywhere. Secrets are `SecretStr`: they never show in repr/str.

Step code calls the cached `get_settings()`; tests call `load_settings(env={...})`,
which reads only the given mapping (no `.env`, no `os.environ`).

Layout: `constants` (named defaults), `values` (enums, rules), `parsers` (one value each),
`sections` (one `BaseSettings` per integration, env names as aliases, and `Settings`),
`loading` (mode, sandbox defaults, the one error message).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache

from services.platform.settings.constants import (
    ADVOWARE_DEFAULT_PRODUCT,
    ADVOWARE_DEFAULT_ROLE,
    ADVOWARE_PROXY_DEFAULT_MAX_BODY_BYTES,
    DEFAULT_ENV_FILE,
    DEFAULT_XAI_COLLECTION_RULES,
    ENV_FILE_VARIABLE,
    GOOGLE_CALENDAR_SCOPE,
    GOOGLE_PROD_CALENDAR_BASE_URL,
    GOOGLE_PROD_TOKEN_URL,
    LOCK_LEASE_DEFAULT,
    LOCK_TTL_DEFAULT,
    PROJECT_ROOT,
    SANDBOX_CALENDAR_MAPPING,
    SIM_DEFAULT_PORTS,
    WEBHOOK_TOKEN_CHARS,
    WEBHOOK_TOKEN_MIN_LENGTH,
    XAI_PROD_API_BASE_URL,
    XAI_PROD_MANAGEMENT_BASE_URL,
)
from services.platform.settings.loading import build_settings, read_environment, resolve_mode
from services.platform.settings.parsers import collection_rules as _collection_rules
from services.platform.settings.sections import (
    AdvowareSettings,
    CalendarSettings,
    EspoCRMSettings,
    GoogleSettings,
    LedgerSettings,
    Settings,
    SimulatorSettings,
    XAISettings,
)
from services.platform.settings.values import (
    AppMode,
    CollectionRule,
    ConflictRule,
    WebhookAuthMode,
    redact_url,
)

__all__ = [
    "ADVOWARE_DEFAULT_PRODUCT",
    "ADVOWARE_DEFAULT_ROLE",
    "ADVOWARE_PROXY_DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_ENV_FILE",
    "DEFAULT_XAI_COLLECTION_RULES",
    "ENV_FILE_VARIABLE",
    "GOOGLE_CALENDAR_SCOPE",
    "GOOGLE_PROD_CALENDAR_BASE_URL",
    "GOOGLE_PROD_TOKEN_URL",
    "LOCK_LEASE_DEFAULT",
    "LOCK_TTL_DEFAULT",
    "PROJECT_ROOT",
    "SANDBOX_CALENDAR_MAPPING",
    "SIM_DEFAULT_PORTS",
    "WEBHOOK_TOKEN_CHARS",
    "WEBHOOK_TOKEN_MIN_LENGTH",
    "XAI_PROD_API_BASE_URL",
    "XAI_PROD_MANAGEMENT_BASE_URL",
    "AdvowareSettings",
    "AppMode",
    "CalendarSettings",
    "CollectionRule",
    "ConflictRule",
    "EspoCRMSettings",
    "GoogleSettings",
    "LedgerSettings",
    "Settings",
    "SimulatorSettings",
    "WebhookAuthMode",
    "XAISettings",
    "_collection_rules",
    "get_settings",
    "load_settings",
    "read_environment",
    "redact_url",
    "reset_settings_cache",
    "resolve_mode",
]


_log = logging.getLogger(__name__)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Validated settings from `env`, or (None) from the environment merged over `.env`.

    Raises ConfigError naming every missing or malformed variable at once.
    """
    return build_settings(read_environment() if env is None else env)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once (raises ConfigError if misconfigured). Their
    warnings (`Settings.warnings`: unknown variables, guide names that lost, open webhooks, ...)
    are logged here, once per process, one line each: the worker's start-up log."""
    settings = load_settings()
    for warning in settings.warnings:
        _log.warning("configuration: %s", warning)
    return settings


def reset_settings_cache() -> None:
    """Forget the cached settings (tests; after changing the environment)."""
    get_settings.cache_clear()
