"""All settings from the environment, validated once at start-up.

`load_settings()` reads the process environment merged over the project's `.env`
(python-dotenv; the real environment wins) and returns a frozen `Settings`, or raises
`ConfigError` with ONE message naming every missing or malformed variable:

    Invalid configuration:
    - ESPOCRM_API_KEY is required in production mode
    - REDIS_URL: not a redis:// URL

Mode (`APP_MODE` = auto | sandbox | production, default auto): auto means sandbox when
ESPOCRM_API_KEY, ADVOWARE_API_KEY and XAI_API_KEY are all unset, else production.
Sandbox defaults (the local simulators on SIM_*_PORT and their demo keys) apply ONLY in
sandbox mode; in production the credentials are required. An empty value (`VAR=`)
counts as unset everywhere. Secrets are `SecretStr`: they never show in repr/str.

Step code calls the cached `get_settings()`; tests call `load_settings(env={...})`,
which reads only the given mapping (no `.env`, no `os.environ`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Mapping
from enum import Enum, StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer

from services.clients.errors import ConfigError

# --------------------------------------------------------------------------- constants
# Named constants (developer guide, "Constants"). Import these instead of magic numbers.

# Entity lock (services.platform.locks): max hold and lease, overridable by LOCK_TTL_SECONDS / LOCK_LEASE_SECONDS
LOCK_TTL_DEFAULT = 1800
LOCK_LEASE_DEFAULT = 60

# Advoware
ADVOWARE_DEFAULT_ROLE = 2
ADVOWARE_DEFAULT_PRODUCT = 64
ADVOWARE_PROXY_DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024  # 10 MiB

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

# The variables whose presence makes APP_MODE=auto choose production.
_AUTO_MODE_KEYS = ("ESPOCRM_API_KEY", "ADVOWARE_API_KEY", "XAI_API_KEY")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ENV_FILE = PROJECT_ROOT / ".env"
ENV_FILE_VARIABLE = "APP_ENV_FILE"
"""Set this to read another dotenv file instead of `<project>/.env`."""


# --------------------------------------------------------------------------- enums


class AppMode(StrEnum):
    """Where the services point: local simulators or the real systems."""

    SANDBOX = "sandbox"
    PRODUCTION = "production"


class WebhookAuthMode(StrEnum):
    """How incoming EspoCRM webhooks are authenticated."""

    SIGNATURE = "signature"  # ESPOCRM_WEBHOOK_SECRETS: verify the `Signature` header per webhook id
    TOKEN = "token"  # ESPOCRM_WEBHOOK_TOKEN: a shared token in the webhook URL (?token=), for setups without secrets
    OPEN = "open"  # neither configured: anyone who can reach the URL may post


class ConflictRule(StrEnum):
    """Which side wins when an appointment changed on both sides since the last sync."""

    ADVOWARE_WINS = "advoware_wins"
    NEWEST_WINS = "newest_wins"


class CollectionRule(NamedTuple):
    """An entity gets an xAI collection when `record[field]` equals `value`."""

    field: str
    value: str

    def matches(self, record: Any) -> bool:
        """Whether a record (mapping or pydantic model) satisfies the rule.

        Booleans compare case-insensitively with "true"/"false"; enums by value;
        everything else by `str()`; a missing field never matches.
        """
        actual = _field_of(record, self.field)
        if actual is None:
            return False
        if isinstance(actual, bool):
            return str(actual).lower() == self.value.lower()
        if isinstance(actual, Enum):
            actual = actual.value
        return str(actual) == self.value


def _field_of(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    if isinstance(record, BaseModel):
        if name in type(record).model_fields:
            return getattr(record, name)
        return (record.model_extra or {}).get(name)
    return getattr(record, name, None)


# --------------------------------------------------------------------------- models


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EspoCRMSettings(_Frozen):
    api_base_url: str
    """Without trailing slash, e.g. `https://crm.example/api/v1`."""
    api_key: SecretStr
    api_secret: SecretStr | None = None
    """Set → HMAC auth (`X-Hmac-Authorization`); unset → `X-Api-Key`."""
    timeout_seconds: float = 30.0
    metadata_ttl_seconds: int = 300
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    """webhook id → secretKey (from `POST Webhook`), for `Signature` verification."""
    webhook_token: SecretStr | None = None

    @property
    def uses_hmac(self) -> bool:
        return self.api_secret is not None

    @property
    def webhook_auth_mode(self) -> WebhookAuthMode:
        if self.webhook_secrets:
            return WebhookAuthMode.SIGNATURE
        if self.webhook_token is not None:
            return WebhookAuthMode.TOKEN
        return WebhookAuthMode.OPEN


class AdvowareSettings(_Frozen):
    api_base_url: str
    """With trailing slash, so `f"{api_base_url}api/v1/Akten"` works."""
    token_url: str
    app_id: str
    api_key: SecretStr
    """Base64 as issued by Advoware; `api_key_bytes()` gives the decoded HMAC key."""
    kanzlei: str
    database: str
    user: str
    password: SecretStr
    role: int = ADVOWARE_DEFAULT_ROLE
    product: int = ADVOWARE_DEFAULT_PRODUCT
    timeout_seconds: float = 30.0
    token_refresh_margin_seconds: float = 60.0
    proxy_token: SecretStr | None = None
    """Unset → the proxy refuses to serve (answers 503)."""
    proxy_allowed_prefixes: tuple[str, ...] = ()
    """Endpoint path prefixes (no leading slash) the proxy forwards; empty = all."""
    proxy_max_body_bytes: int = ADVOWARE_PROXY_DEFAULT_MAX_BODY_BYTES
    proxy_timeout_seconds: float = 25.0
    """How long the proxy waits for Advoware; below the engine's 30 s so the proxy answers 504 itself."""

    def api_key_bytes(self) -> bytes:
        """The decoded API key: the HMAC-SHA512 key of the token request."""
        return base64.b64decode(self.api_key.get_secret_value(), validate=True)


class XAISettings(_Frozen):
    api_base_url: str
    """Files API, without trailing slash."""
    management_base_url: str
    """Collections management API, without trailing slash."""
    api_key: SecretStr
    management_key: SecretStr
    collection_rules: dict[str, CollectionRule] = Field(default_factory=dict)
    """EspoCRM entity type → rule deciding whether the entity should have a collection."""

    def collection_rule_for(self, entity_type: str) -> CollectionRule | None:
        return self.collection_rules.get(str(entity_type))

    def should_have_collection(self, entity_type: str, record: Any) -> bool:
        """False for entity types without a rule."""
        rule = self.collection_rule_for(entity_type)
        return rule is not None and rule.matches(record)


class GoogleSettings(_Frozen):
    calendar_base_url: str
    """Without trailing slash, e.g. `https://www.googleapis.com/calendar/v3`."""
    token_url: str
    service_account_file: Path | None = None
    """Validated at load: exists, JSON object with client_email and private_key."""
    static_token: SecretStr | None = None
    """A fixed bearer token (sandbox); when set it is used instead of the service account."""
    delegated_subject: str | None = None
    scope: str = GOOGLE_CALENDAR_SCOPE

    @property
    def uses_static_token(self) -> bool:
        return self.static_token is not None


class CalendarSettings(_Frozen):
    mapping: dict[str, str] = Field(default_factory=dict)
    """Employee Kürzel → Google calendar id. Empty = calendar sync has nothing to do."""
    sync_past_days: int = 30
    sync_future_days: int = 180
    conflict_rule: ConflictRule = ConflictRule.NEWEST_WINS


class LedgerSettings(_Frozen):
    """The sync ledger (services.platform.ledger): delivery, retries and dead letters of queued work."""

    key_prefix: str = "ledger"
    """Redis keys `{prefix}:mark:{kind}:{id}`, `{prefix}:due:{kind}`, ..."""
    backoff_scale: float = 1.0
    """Multiplies every kind's retry delays (tests: e.g. 0.01)."""
    time_box_scale: float = 1.0
    """Multiplies every kind's time-box (tests: a hung handler is cancelled quickly)."""
    grace_seconds: float = 30.0
    """A fresh mark's event is enqueued at once; the sweeper re-enqueues it only if it was
    not handled within this grace."""
    claim_lease_seconds: float = 60.0
    """A running handler renews its claim every third of this; a dead worker's claim runs out after it."""
    requeue_lease_seconds: float = 60.0
    """A mark the sweeper re-enqueued is not re-enqueued again before this."""
    sweep_cron: str = "*/30 * * * * *"
    """The sweeper's schedule (6 fields, seconds first, UTC)."""
    sweep_batch: int = 200
    sweep_max_batches: int = 10
    """The sweeper re-enqueues at most sweep_batch × sweep_max_batches marks per run."""


class SimulatorSettings(_Frozen):
    espocrm_port: int = SIM_DEFAULT_PORTS["espocrm"]
    advoware_port: int = SIM_DEFAULT_PORTS["advoware"]
    xai_port: int = SIM_DEFAULT_PORTS["xai"]
    google_port: int = SIM_DEFAULT_PORTS["google"]


class Settings(_Frozen):
    """Everything the services need. Build it with `load_settings()`/`get_settings()`."""

    mode: AppMode
    log_level: str = "INFO"
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)
    """May hold a password: left out of repr, and dumps show `redis_url_redacted`."""
    lock_ttl_seconds: int = LOCK_TTL_DEFAULT
    lock_lease_seconds: int = LOCK_LEASE_DEFAULT
    """How long an entity lock lives in Redis between its holder's renewals (every third of
    it): how long a killed worker blocks its entities at most (services.platform.locks)."""
    espocrm: EspoCRMSettings
    advoware: AdvowareSettings
    xai: XAISettings
    google: GoogleSettings
    calendar: CalendarSettings = Field(default_factory=CalendarSettings)
    simulators: SimulatorSettings = Field(default_factory=SimulatorSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    ops_token: SecretStr | None = None
    """Bearer token of the operator endpoints (GET /ops/ledger, POST /ops/ledger/replay); unset → 503."""
    warnings: tuple[str, ...] = ()
    """Non-fatal remarks (e.g. webhooks unauthenticated): log them at start-up."""

    @field_serializer("redis_url")
    def _dump_redis_url(self, value: str) -> str:
        return redact_url(value)

    @property
    def is_sandbox(self) -> bool:
        return self.mode is AppMode.SANDBOX

    @property
    def is_production(self) -> bool:
        return self.mode is AppMode.PRODUCTION

    @property
    def webhook_auth_mode(self) -> WebhookAuthMode:
        return self.espocrm.webhook_auth_mode

    @property
    def redis_url_redacted(self) -> str:
        return redact_url(self.redis_url)

    def summary(self) -> dict[str, Any]:
        """A secret-free overview for start-up logs."""
        return {
            "mode": self.mode.value,
            "log_level": self.log_level,
            "redis_url": self.redis_url_redacted,
            "espocrm": self.espocrm.api_base_url,
            "espocrm_auth": "hmac" if self.espocrm.uses_hmac else "api_key",
            "webhook_auth_mode": self.webhook_auth_mode.value,
            "advoware": self.advoware.api_base_url,
            "xai": self.xai.api_base_url,
            "xai_management": self.xai.management_base_url,
            "xai_collection_rules": {k: f"{r.field}={r.value}" for k, r in self.xai.collection_rules.items()},
            "google_calendar": self.google.calendar_base_url,
            "calendars": sorted(self.calendar.mapping),
            "advoware_proxy_enabled": self.advoware.proxy_token is not None,
            "ledger": {"key_prefix": self.ledger.key_prefix, "sweep_cron": self.ledger.sweep_cron,
                       "backoff_scale": self.ledger.backoff_scale, "grace_seconds": self.ledger.grace_seconds},
            "ops_api_enabled": self.ops_token is not None,
        }


def redact_url(url: str) -> str:
    """`scheme://user:secret@host/…` → `scheme://user:***@host/…` (unchanged without a password)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


# --------------------------------------------------------------------------- loading

T = TypeVar("T")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


class _Reader:
    """Reads typed values, collecting every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str], mode: AppMode) -> None:
        self.env = env
        self.mode = mode
        self.errors: list[str] = []
        self.warnings: list[str] = []

    @property
    def sandbox(self) -> bool:
        return self.mode is AppMode.SANDBOX

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def error(self, message: str) -> None:
        self.errors.append(message)

    def text(
        self,
        name: str,
        *,
        default: str | None = None,
        sandbox: str | None = None,
        required: bool = False,
    ) -> str | None:
        """The value, else the sandbox default (sandbox mode only), else `default`;
        missing and `required` → an error (in production: "... required in production mode")."""
        value = self.raw(name)
        if value is not None:
            return value
        if self.sandbox and sandbox is not None:
            return sandbox
        if default is not None:
            return default
        if required:
            suffix = " in production mode" if not self.sandbox else ""
            self.error(f"{name} is required{suffix}")
        return None

    def parsed(
        self,
        name: str,
        parse: Callable[[str], T],
        *,
        default: str | None = None,
        sandbox: str | None = None,
        required: bool = False,
    ) -> T | None:
        value = self.text(name, default=default, sandbox=sandbox, required=required)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            self.error(f"{name}: {exc}")
            return None

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        def parse(value: str) -> int:
            try:
                number = int(value)
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
            if number < minimum or (maximum is not None and number > maximum):
                upper = f" and {maximum}" if maximum is not None else ""
                lower = f"between {minimum}{upper}" if maximum is not None else f">= {minimum}"
                raise ValueError(f"must be {lower}, got {number}")
            return number

        result = self.parsed(name, parse, default=str(default))
        return default if result is None else result

    def number(self, name: str, default: float, *, minimum: float = 0.0, exclusive: bool = True) -> float:
        def parse(value: str) -> float:
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(f"expected a finite number, got {value!r}")
            if number < minimum or (exclusive and number == minimum):
                raise ValueError(f"must be {'>' if exclusive else '>='} {minimum:g}, got {value}")
            return number

        result = self.parsed(name, parse, default=repr(default))
        return default if result is None else result

    def url(
        self,
        name: str,
        *,
        default: str | None = None,
        sandbox: str | None = None,
        required: bool = False,
        trailing_slash: bool = False,
    ) -> str | None:
        def parse(value: str) -> str:
            return _http_url(value, trailing_slash=trailing_slash)

        return self.parsed(name, parse, default=default, sandbox=sandbox, required=required)

    def secret(
        self,
        name: str,
        *,
        sandbox: str | None = None,
        required: bool = False,
    ) -> SecretStr | None:
        value = self.text(name, sandbox=sandbox, required=required)
        return SecretStr(value) if value is not None else None

    def choice(self, name: str, enum: type[Enum], default: Enum) -> Any:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return enum(value.lower())
        except ValueError:
            allowed = "|".join(str(m.value) for m in enum)
            self.error(f"{name}: expected one of {allowed}, got {value!r}")
            return default


def _http_url(value: str, *, trailing_slash: bool = False) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("not a valid http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {value!r}")
    if " " in value:
        raise ValueError(f"URL contains spaces: {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"invalid port in URL {value!r}") from None
    value = value.rstrip("/")
    return value + "/" if trailing_slash else value


def _redis_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018
    except ValueError:
        raise ValueError("not a redis:// URL") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// URL without a socket path")
        return value
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("not a redis:// URL")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError("database in the URL path must be a number")
    return value


def _base64_key(value: str) -> str:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64 (the key Advoware issued is base64-encoded)") from None
    if not decoded:
        raise ValueError("decodes to an empty key")
    return value


def _parse_pairs(value: str, *, what: str, secret: bool = False) -> list[tuple[str, str]]:
    """`a:b,c:d` → [(a, b), (c, d)]; splits at the first ':'. Secret values are never echoed."""
    pairs: list[tuple[str, str]] = []
    for number, entry in enumerate(value.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        left, colon, right = entry.partition(":")
        left, right = left.strip(), right.strip()
        if not colon or not left or not right:
            shown = f"#{number}" if secret else repr(entry)
            raise ValueError(f"entry {shown} is not {what}")
        pairs.append((left, right))
    return pairs


def _webhook_secrets(value: str) -> dict[str, SecretStr]:
    result: dict[str, SecretStr] = {}
    for webhook_id, secret in _parse_pairs(value, what="webhookId:secret", secret=True):
        if any(c.isspace() for c in webhook_id):
            raise ValueError(f"webhook id {webhook_id!r} contains whitespace")
        if webhook_id in result:
            raise ValueError(f"webhook id {webhook_id!r} appears twice")
        result[webhook_id] = SecretStr(secret)
    if not result:
        raise ValueError("no webhookId:secret entries")
    return result


WEBHOOK_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
WEBHOOK_TOKEN_MIN_LENGTH = 32


def _key_prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", value):
        raise ValueError(f"expected 1-40 characters of A-Z a-z 0-9 _ . -, got {value!r}")
    return value


def _cron_expression(value: str) -> str:
    from services.platform.ledger.cron import validate_expression

    return validate_expression(value.strip())


def _webhook_token(value: str) -> SecretStr:
    """ESPOCRM_WEBHOOK_TOKEN rides in the webhook URL (`?token=...`), so it may only use the
    characters a URL carries unencoded (RFC 3986 unreserved): nginx hands the raw parameter on,
    the engine a decoded one, and both must be the same string. The error never shows the value."""
    if not set(value) <= WEBHOOK_TOKEN_CHARS:
        raise ValueError("may only contain A-Z a-z 0-9 - . _ ~ (it is sent in the webhook URL); e.g. `openssl rand -hex 32`")
    return SecretStr(value)


def _validate_calendar_mapping(pairs: list[tuple[Any, Any]]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    seen_ids: dict[str, str] = {}
    for kuerzel, calendar_id in pairs:
        if not isinstance(kuerzel, str) or not kuerzel.strip():
            raise ValueError("empty Kürzel")
        if not isinstance(calendar_id, str) or not calendar_id.strip():
            raise ValueError(f"empty calendar id for Kürzel {kuerzel!r}")
        kuerzel, calendar_id = kuerzel.strip(), calendar_id.strip()
        if any(c.isspace() for c in kuerzel) or any(c.isspace() for c in calendar_id):
            raise ValueError(f"whitespace in entry {kuerzel!r}")
        if kuerzel in mapping:
            raise ValueError(f"Kürzel {kuerzel!r} appears twice")
        if calendar_id in seen_ids:
            raise ValueError(f"calendar id {calendar_id!r} is mapped to both {seen_ids[calendar_id]!r} and {kuerzel!r}")
        mapping[kuerzel] = calendar_id
        seen_ids[calendar_id] = kuerzel
    return mapping


def _calendar_mapping(value: str) -> dict[str, str]:
    pairs = _parse_pairs(value, what="KÜRZEL:calendarId")
    if not pairs:
        raise ValueError("no KÜRZEL:calendarId entries")
    return _validate_calendar_mapping(list(pairs))


def _calendar_mapping_file(value: str) -> dict[str, str]:
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text, object_pairs_hook=list)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{value} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list) or any(not isinstance(p, tuple) for p in data):
        raise ValueError(f'{value} must hold a JSON object {{"KÜRZEL": "calendar id"}}')
    if not data:
        raise ValueError(f"{value} holds no entries")
    return _validate_calendar_mapping(data)


def _collection_rules(value: str) -> dict[str, CollectionRule]:
    rules: dict[str, CollectionRule] = {}
    for entry in value.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        entity_type, colon, condition = entry.partition(":")
        field, eq, expected = condition.partition("=")
        entity_type, field, expected = entity_type.strip(), field.strip(), expected.strip()
        if not colon or not eq or not _IDENT.match(entity_type) or not _IDENT.match(field) or not expected:
            raise ValueError(f"entry {entry!r} is not EntityType:field=value")
        if entity_type in rules:
            raise ValueError(f"entity type {entity_type!r} appears twice")
        rules[entity_type] = CollectionRule(field, expected)
    if not rules:
        raise ValueError("no EntityType:field=value entries")
    return rules


def _prefixes(value: str) -> tuple[str, ...]:
    result: list[str] = []
    for item in value.split(","):
        item = item.strip().lstrip("/")
        if item and item not in result:
            result.append(item)
    return tuple(result)


def _service_account_file(value: str) -> Path:
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"{value} is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"{value} is not a service-account JSON object")
    missing = [k for k in ("client_email", "private_key") if not data.get(k)]
    if missing:
        raise ValueError(f"{value} lacks {', '.join(missing)} (not a service-account key file?)")
    return path


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


def _redis_from_parts(r: _Reader) -> str | None:
    """REDIS_URL, else the guide's REDIS_HOST/REDIS_PORT/REDIS_DB_ADVOWARE_CACHE, else the default."""
    url = r.raw("REDIS_URL")
    if url is not None:
        try:
            return _redis_url(url)
        except ValueError as exc:
            r.error(f"REDIS_URL: {exc}")
            return None
    host = r.raw("REDIS_HOST")
    port_raw = r.raw("REDIS_PORT")
    db_raw = r.raw("REDIS_DB_ADVOWARE_CACHE")
    if host is None and port_raw is None and db_raw is None:
        return "redis://127.0.0.1:6379/0"
    port = r.integer("REDIS_PORT", 6379, minimum=1, maximum=65535)
    db = r.integer("REDIS_DB_ADVOWARE_CACHE", 0, minimum=0)
    host = host or "127.0.0.1"
    if any(c in host for c in "/@: ") and not host.startswith("["):
        r.error(f"REDIS_HOST: not a host name: {host!r}")
        return None
    return f"redis://{host}:{port}/{db}"


def _build(env: Mapping[str, str]) -> Settings:
    mode, mode_error = resolve_mode(env)
    r = _Reader(env, mode)
    if mode_error:
        r.error(mode_error)
    prod = not r.sandbox

    log_level = (r.raw("LOG_LEVEL") or "INFO").upper()
    if log_level == "WARN":
        log_level = "WARNING"
    if log_level not in _LOG_LEVELS:
        r.error(f"LOG_LEVEL: expected one of {'|'.join(sorted(_LOG_LEVELS))}, got {log_level!r}")
        log_level = "INFO"

    redis_url = _redis_from_parts(r)
    lock_ttl = r.integer("LOCK_TTL_SECONDS", LOCK_TTL_DEFAULT, minimum=1)
    lock_lease = r.integer("LOCK_LEASE_SECONDS", LOCK_LEASE_DEFAULT, minimum=3)
    if lock_lease >= lock_ttl:
        r.error(f"LOCK_LEASE_SECONDS ({lock_lease}) must be shorter than LOCK_TTL_SECONDS ({lock_ttl})")

    sims = SimulatorSettings(
        espocrm_port=r.integer("SIM_ESPOCRM_PORT", SIM_DEFAULT_PORTS["espocrm"], minimum=1, maximum=65535),
        advoware_port=r.integer("SIM_ADVOWARE_PORT", SIM_DEFAULT_PORTS["advoware"], minimum=1, maximum=65535),
        xai_port=r.integer("SIM_XAI_PORT", SIM_DEFAULT_PORTS["xai"], minimum=1, maximum=65535),
        google_port=r.integer("SIM_GOOGLE_PORT", SIM_DEFAULT_PORTS["google"], minimum=1, maximum=65535),
    )
    espo_sim = f"http://127.0.0.1:{sims.espocrm_port}"
    advo_sim = f"http://127.0.0.1:{sims.advoware_port}"
    xai_sim = f"http://127.0.0.1:{sims.xai_port}"
    google_sim = f"http://127.0.0.1:{sims.google_port}"

    # EspoCRM
    espo_url = r.url("ESPOCRM_API_BASE_URL", sandbox=f"{espo_sim}/api/v1", required=True)
    espo_key = r.secret("ESPOCRM_API_KEY", sandbox="sandbox-espocrm-key", required=True)
    espo_secret = r.secret("ESPOCRM_API_SECRET")
    espo_timeout = r.number("ESPOCRM_API_TIMEOUT_SECONDS", 30.0)
    espo_meta_ttl = r.integer("ESPOCRM_METADATA_TTL_SECONDS", 300, minimum=0)
    webhook_secrets = r.parsed("ESPOCRM_WEBHOOK_SECRETS", _webhook_secrets) or {}
    webhook_token = r.parsed("ESPOCRM_WEBHOOK_TOKEN", _webhook_token)

    # Advoware
    advo_url = r.url("ADVOWARE_API_BASE_URL", sandbox=f"{advo_sim}/", required=True, trailing_slash=True)
    advo_token_url = r.url("ADVOWARE_TOKEN_URL", sandbox=f"{advo_sim}/api/v1/Token", required=True)
    advo_app = r.text("ADVOWARE_APP_ID", sandbox="sandbox-app", required=True)
    sandbox_advo_key = base64.b64encode(b"sandbox-advoware-secret").decode()
    advo_key_raw = r.parsed("ADVOWARE_API_KEY", _base64_key, sandbox=sandbox_advo_key, required=True)
    advo_kanzlei = r.text("ADVOWARE_KANZLEI", sandbox="sandbox", required=True)
    advo_db = r.text("ADVOWARE_DATABASE", sandbox="advo", required=True)
    advo_user = r.text("ADVOWARE_USER", sandbox="sandbox", required=True)
    advo_password = r.secret("ADVOWARE_PASSWORD", sandbox="sandbox", required=True)
    advo_role = r.integer("ADVOWARE_ROLE", ADVOWARE_DEFAULT_ROLE, minimum=0)
    advo_product = r.integer("ADVOWARE_PRODUCT", ADVOWARE_DEFAULT_PRODUCT, minimum=0)
    advo_timeout = r.number("ADVOWARE_API_TIMEOUT_SECONDS", 30.0)
    advo_margin = r.number("ADVOWARE_TOKEN_REFRESH_MARGIN_SECONDS", 60.0, exclusive=False)
    proxy_token = r.secret("ADVOWARE_PROXY_TOKEN", sandbox="sandbox-proxy-token")
    proxy_prefixes = r.parsed("ADVOWARE_PROXY_ALLOWED_PREFIXES", _prefixes) or ()
    proxy_max_body = r.integer("ADVOWARE_PROXY_MAX_BODY_BYTES", ADVOWARE_PROXY_DEFAULT_MAX_BODY_BYTES, minimum=1)
    proxy_timeout = r.number("ADVOWARE_PROXY_TIMEOUT_SECONDS", 25.0)

    # xAI
    xai_url = r.url("XAI_API_BASE_URL", sandbox=xai_sim, default=XAI_PROD_API_BASE_URL)
    xai_mgmt_url = r.url("XAI_MANAGEMENT_BASE_URL", sandbox=xai_sim, default=XAI_PROD_MANAGEMENT_BASE_URL)
    xai_key = r.secret("XAI_API_KEY", sandbox="sandbox-xai-key", required=True)
    xai_mgmt_key = r.secret("XAI_MANAGEMENT_KEY", sandbox="sandbox-xai-management-key", required=True)
    rules = r.parsed("XAI_COLLECTION_RULES", _collection_rules, default=DEFAULT_XAI_COLLECTION_RULES) or {}

    # Google
    g_cal_url = r.url(
        "GOOGLE_CALENDAR_BASE_URL", sandbox=f"{google_sim}/calendar/v3", default=GOOGLE_PROD_CALENDAR_BASE_URL
    )
    g_token_url = r.url("GOOGLE_TOKEN_URL", sandbox=f"{google_sim}/token", default=GOOGLE_PROD_TOKEN_URL)
    g_static = r.secret("GOOGLE_CALENDAR_STATIC_TOKEN", sandbox="sandbox-google-token")
    # Production needs the service-account file unless a static token was set explicitly.
    g_sa_file = r.parsed("GOOGLE_SERVICE_ACCOUNT_FILE", _service_account_file, required=prod and g_static is None)
    g_subject = r.text("GOOGLE_DELEGATED_SUBJECT")

    # Calendar sync
    mapping_inline = r.raw("CALENDAR_MAPPING")
    mapping_file = r.raw("CALENDAR_MAPPING_FILE")
    mapping: dict[str, str] = {}
    if mapping_inline is not None and mapping_file is not None:
        r.error("CALENDAR_MAPPING and CALENDAR_MAPPING_FILE are both set: use only one")
    elif mapping_inline is not None:
        mapping = r.parsed("CALENDAR_MAPPING", _calendar_mapping) or {}
    elif mapping_file is not None:
        mapping = r.parsed("CALENDAR_MAPPING_FILE", _calendar_mapping_file) or {}
    elif r.sandbox:
        mapping = dict(SANDBOX_CALENDAR_MAPPING)
    else:
        r.warnings.append("CALENDAR_MAPPING is empty: calendar sync has no employees to sync")
    past_days = r.integer("CALENDAR_SYNC_PAST_DAYS", 30, minimum=0, maximum=3650)
    future_days = r.integer("CALENDAR_SYNC_FUTURE_DAYS", 180, minimum=0, maximum=3650)
    conflict_rule = r.choice("CALENDAR_CONFLICT_RULE", ConflictRule, ConflictRule.NEWEST_WINS)

    # Sync ledger (services.platform.ledger) and the operator endpoints
    ledger = LedgerSettings(
        key_prefix=r.parsed("LEDGER_KEY_PREFIX", _key_prefix, default="ledger") or "ledger",
        backoff_scale=r.number("LEDGER_BACKOFF_SCALE", 1.0),
        time_box_scale=r.number("LEDGER_TIME_BOX_SCALE", 1.0),
        grace_seconds=r.number("LEDGER_GRACE_SECONDS", 30.0, exclusive=False),
        claim_lease_seconds=r.number("LEDGER_CLAIM_LEASE_SECONDS", 60.0),
        requeue_lease_seconds=r.number("LEDGER_REQUEUE_LEASE_SECONDS", 60.0),
        sweep_cron=r.parsed("LEDGER_SWEEP_CRON", _cron_expression, default="*/30 * * * * *") or "*/30 * * * * *",
        sweep_batch=r.integer("LEDGER_SWEEP_BATCH", 200, minimum=1, maximum=10000),
        sweep_max_batches=r.integer("LEDGER_SWEEP_MAX_BATCHES", 10, minimum=1, maximum=1000),
    )
    ops_token = r.secret("OPS_TOKEN")

    if r.errors:
        raise ConfigError("Invalid configuration:\n- " + "\n- ".join(r.errors))

    if prod and not webhook_secrets and webhook_token is None:
        r.warnings.append(
            "EspoCRM webhooks are accepted without authentication "
            "(set ESPOCRM_WEBHOOK_SECRETS or ESPOCRM_WEBHOOK_TOKEN)"
        )
    if prod and webhook_token is not None and len(webhook_token.get_secret_value()) < WEBHOOK_TOKEN_MIN_LENGTH:
        r.warnings.append(f"ESPOCRM_WEBHOOK_TOKEN is shorter than {WEBHOOK_TOKEN_MIN_LENGTH} characters (e.g. `openssl rand -hex 32`)")
    if proxy_token is None:
        r.warnings.append("ADVOWARE_PROXY_TOKEN is unset: the Advoware proxy refuses every request")
    if prod and g_static is not None:
        r.warnings.append("GOOGLE_CALENDAR_STATIC_TOKEN is set in production: the service account is not used")

    # Everything below was validated above, so the asserts document (not check) the types.
    assert espo_url and espo_key and advo_url and advo_token_url and advo_app and advo_key_raw
    assert advo_kanzlei and advo_db and advo_user and advo_password and xai_url and xai_mgmt_url
    assert xai_key and xai_mgmt_key and g_cal_url and g_token_url and redis_url
    try:
        return Settings(
            mode=mode,
            log_level=log_level,
            redis_url=redis_url,
            lock_ttl_seconds=lock_ttl,
            lock_lease_seconds=lock_lease,
            espocrm=EspoCRMSettings(
                api_base_url=espo_url,
                api_key=espo_key,
                api_secret=espo_secret,
                timeout_seconds=espo_timeout,
                metadata_ttl_seconds=espo_meta_ttl,
                webhook_secrets=webhook_secrets,
                webhook_token=webhook_token,
            ),
            advoware=AdvowareSettings(
                api_base_url=advo_url,
                token_url=advo_token_url,
                app_id=advo_app,
                api_key=SecretStr(advo_key_raw),
                kanzlei=advo_kanzlei,
                database=advo_db,
                user=advo_user,
                password=advo_password,
                role=advo_role,
                product=advo_product,
                timeout_seconds=advo_timeout,
                token_refresh_margin_seconds=advo_margin,
                proxy_token=proxy_token,
                proxy_allowed_prefixes=proxy_prefixes,
                proxy_max_body_bytes=proxy_max_body,
                proxy_timeout_seconds=proxy_timeout,
            ),
            xai=XAISettings(
                api_base_url=xai_url,
                management_base_url=xai_mgmt_url,
                api_key=xai_key,
                management_key=xai_mgmt_key,
                collection_rules=rules,
            ),
            google=GoogleSettings(
                calendar_base_url=g_cal_url,
                token_url=g_token_url,
                service_account_file=g_sa_file,
                static_token=g_static,
                delegated_subject=g_subject,
            ),
            calendar=CalendarSettings(
                mapping=mapping,
                sync_past_days=past_days,
                sync_future_days=future_days,
                conflict_rule=conflict_rule,
            ),
            simulators=sims,
            ledger=ledger,
            ops_token=ops_token,
            warnings=tuple(r.warnings),
        )
    except ValueError as exc:  # pydantic.ValidationError is a ValueError; should not happen
        raise ConfigError(f"Invalid configuration:\n- {exc}") from None


def read_environment(env_file: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """`os.environ` merged over the dotenv file (the real environment wins)."""
    from dotenv import dotenv_values

    path = Path(env_file) if env_file else Path(os.environ.get(ENV_FILE_VARIABLE) or DEFAULT_ENV_FILE)
    merged: dict[str, str] = {}
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Validated settings from `env`, or (None) from the environment merged over `.env`.

    Raises ConfigError naming every missing or malformed variable at once.
    """
    return _build(read_environment() if env is None else env)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once (raises ConfigError if misconfigured)."""
    return load_settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests; after changing the environment)."""
    get_settings.cache_clear()
