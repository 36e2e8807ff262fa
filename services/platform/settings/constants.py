"""Named defaults of the settings (developer guide, "Constants"): import these instead of magic numbers."""

from __future__ import annotations

from pathlib import Path

# Entity lock (services.platform.locks): max hold and lease, overridable by LOCK_TTL_SECONDS / LOCK_LEASE_SECONDS
LOCK_TTL_DEFAULT = 1800
LOCK_LEASE_DEFAULT = 60

# Advoware
ADVOWARE_DEFAULT_ROLE = 2
ADVOWARE_DEFAULT_PRODUCT = 64
ADVOWARE_PROXY_DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024  # 10 MiB
ADVOWARE_PROXY_METHODS = ("GET", "POST", "PUT", "DELETE")
"""The methods the proxy serves, in the order ADVOWARE_PROXY_ALLOWED_PREFIXES entries are written."""
ADVOWARE_PROXY_TOKEN_MIN_BYTES = 32
ADVOWARE_PROXY_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")
"""A caller token is an RFC 6750 b64token (what `openssl rand -hex 32` or `-base64 32` gives)."""
ADVOWARE_PROXY_DEFAULT_CALLER = "default"
"""The caller name ADVOWARE_PROXY_TOKEN stands for in the logs."""
ADVOWARE_PROXY_AUTH_FAILURE_LIMIT = 10
ADVOWARE_PROXY_AUTH_FAILURE_WINDOW_SECONDS = 60.0
ADVOWARE_TOKEN_MIN_REFRESH_SECONDS = 30.0
"""A 401 from Advoware drops the shared gateway token only when it is at least this old."""
SANDBOX_PROXY_TOKEN = "sandbox-proxy-token-public-not-a-secret"
"""Sandbox only (loopback simulators): public, in the docs; production has no default."""
SANDBOX_PROXY_ALLOWED_PREFIXES = "api/v1/advonet,GET:api/v1/Akten"
SANDBOX_OPS_TOKEN = "sandbox-ops-token-public-not-a-secret"
"""Sandbox only (loopback): the operators' API works out of the box (`bitbylaw-ops` reads it from the
settings); public, in the docs; production has no default and refuses one under 32 characters."""

# Simulators (sandbox)
SIM_DEFAULT_PORTS = {"espocrm": 3201, "advoware": 3202, "xai": 3203, "google": 3204}

# Production endpoints with a fixed public address
XAI_PROD_API_BASE_URL = "https://api.x.ai"
XAI_PROD_MANAGEMENT_BASE_URL = "https://management-api.x.ai"
GOOGLE_PROD_CALENDAR_BASE_URL = "https://www.googleapis.com/calendar/v3"
GOOGLE_PROD_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"

DEFAULT_XAI_COLLECTION_RULES = "Account:status=Active;Raeumungsklage:status=Offen;CBeteiligte:xaiCollectionEnabled=true"
SANDBOX_CALENDAR_MAPPING = {
    "MM": "mm@kanzlei.example",
    "AB": "ab@kanzlei.example",
    "CK": "ck@kanzlei.example",
}

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
GUIDE_REDIS_DB = 1
"""REDIS_DB_ADVOWARE_CACHE's default (the developer guide's) when REDIS_HOST/REDIS_PORT are used."""

WEBHOOK_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
"""ESPOCRM_WEBHOOK_TOKEN rides in the webhook URL: only RFC 3986 unreserved characters."""
WEBHOOK_TOKEN_MIN_LENGTH = 32
WEBHOOK_REPLAY_DEFAULT_SECONDS = 600
"""How long an accepted signed webhook body is remembered (ESPOCRM_WEBHOOK_REPLAY_SECONDS):
the same body again within it is a replay (409). EspoCRM retries a failed batch 10 minutes later."""

ENGINE_QUEUE_CONCURRENCY_DEFAULT = 16
"""The engine queue's concurrency per subscribed topic when III_QUEUE_CONCURRENCY is unset
(iii-config.yaml and deploy/iii-config.production.yaml `${III_QUEUE_CONCURRENCY:16}`)."""
DEFAULT_REST_HOST = "127.0.0.1"
"""The engine's REST bind when III_REST_HOST is unset (iii-config.yaml `${III_REST_HOST:127.0.0.1}`)."""
PRODUCTION_URL_VARIABLES = (
    "ESPOCRM_API_BASE_URL",
    "ADVOWARE_API_BASE_URL",
    "ADVOWARE_TOKEN_URL",
    "XAI_API_BASE_URL",
    "XAI_MANAGEMENT_BASE_URL",
    "GOOGLE_CALENDAR_BASE_URL",
    "GOOGLE_TOKEN_URL",
)
"""The external systems' URLs: https:// only in production; any of them set to a host other
than this machine makes APP_MODE=auto choose production."""

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_ENV_FILE = PROJECT_ROOT / ".env"
ENV_FILE_VARIABLE = "APP_ENV_FILE"
"""Set this to read another dotenv file instead of `<project>/.env`."""
