"""The settings sections: one `pydantic-settings` model per integration or platform piece.

Each field's `validation_alias` is its environment variable; values given by field name
(`CalendarSettings(mapping=...)`) work too. A section reads nothing by itself: its only
source is the init values, which `loading.py` fills from the one mapping it was given
(the process environment merged over `.env`, or a test's dict), so a test never sees
`os.environ`. Parsers run as before-validators on strings (`parsers.py`); defaults are the
production ones, the sandbox defaults are laid over by the loader in sandbox mode only.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_serializer, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from services.platform.settings import parsers as p
from services.platform.settings.constants import (
    ADVOWARE_DEFAULT_PRODUCT,
    ADVOWARE_DEFAULT_ROLE,
    ADVOWARE_PROXY_AUTH_FAILURE_LIMIT,
    ADVOWARE_PROXY_AUTH_FAILURE_WINDOW_SECONDS,
    ADVOWARE_PROXY_DEFAULT_CALLER,
    ADVOWARE_PROXY_DEFAULT_MAX_BODY_BYTES,
    ADVOWARE_TOKEN_MIN_REFRESH_SECONDS,
    DEFAULT_REDIS_URL,
    DEFAULT_XAI_COLLECTION_RULES,
    ENGINE_QUEUE_CONCURRENCY_DEFAULT,
    GOOGLE_CALENDAR_SCOPE,
    GOOGLE_PROD_CALENDAR_BASE_URL,
    GOOGLE_PROD_TOKEN_URL,
    GUIDE_REDIS_DB,
    LOCK_LEASE_DEFAULT,
    LOCK_TTL_DEFAULT,
    SIM_DEFAULT_PORTS,
    WEBHOOK_REPLAY_DEFAULT_SECONDS,
    XAI_PROD_API_BASE_URL,
    XAI_PROD_MANAGEMENT_BASE_URL,
)
from services.platform.settings.values import (
    AppMode,
    CollectionRule,
    ConflictRule,
    WebhookAuthMode,
    redact_url,
)

Url = Annotated[str, p.env_value(p.http_url)]
UrlWithSlash = Annotated[str, p.env_value(p.http_url_with_slash)]
Port = Annotated[int, p.integer(1, 65535)]
Seconds = Annotated[float, p.number()]
Text = Annotated[str, p.env_value()]
Secret = Annotated[SecretStr, p.env_value()]


class Section(BaseSettings):
    """A frozen settings section whose only source is its init values (see the module docstring)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", populate_by_name=True, case_sensitive=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    @classmethod
    def env_names(cls) -> tuple[str, ...]:
        """The environment variables this section reads (its fields' aliases; of an `AliasChoices`
        the project's own name, the first: the guide's names are mapped onto it, see aliases.py)."""
        names = []
        for f in cls.model_fields.values():
            alias = f.validation_alias
            if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
                alias = alias.choices[0]
            if isinstance(alias, str):
                names.append(alias)
        return tuple(names)


class RuntimeSettings(Section):
    """Log level, Redis, the entity lock and the operator token (copied onto `Settings`)."""

    log_level: Annotated[str, p.env_value(p.log_level)] = Field("INFO", validation_alias="LOG_LEVEL")
    redis_url: Annotated[str | None, p.env_value(p.redis_url)] = Field(None, validation_alias="REDIS_URL", repr=False)
    """REDIS_URL wins; else the guide's REDIS_HOST/REDIS_PORT/REDIS_DB_ADVOWARE_CACHE; else the default."""
    redis_host: Annotated[str | None, p.env_value(p.redis_host)] = Field(None, validation_alias="REDIS_HOST")
    redis_port: Annotated[int | None, p.integer(1, 65535)] = Field(None, validation_alias="REDIS_PORT")
    redis_db: Annotated[int | None, p.integer(0)] = Field(None, validation_alias="REDIS_DB_ADVOWARE_CACHE")
    """The guide's default, 1, when REDIS_HOST/REDIS_PORT are used without it."""
    lock_ttl_seconds: Annotated[int, p.integer(1)] = Field(LOCK_TTL_DEFAULT, validation_alias="LOCK_TTL_SECONDS")
    lock_lease_seconds: Annotated[int, p.integer(3)] = Field(LOCK_LEASE_DEFAULT, validation_alias="LOCK_LEASE_SECONDS")
    ops_token: Secret | None = Field(None, validation_alias="OPS_TOKEN")

    @model_validator(mode="after")
    def _lease_shorter_than_ttl(self) -> RuntimeSettings:
        if self.lock_lease_seconds >= self.lock_ttl_seconds:
            raise ValueError(
                f"LOCK_LEASE_SECONDS ({self.lock_lease_seconds}) must be shorter than "
                f"LOCK_TTL_SECONDS ({self.lock_ttl_seconds})"
            )
        return self

    @property
    def effective_redis_url(self) -> str:
        if self.redis_url is not None:
            return self.redis_url
        if self.redis_host is None and self.redis_port is None and self.redis_db is None:
            return DEFAULT_REDIS_URL
        db = GUIDE_REDIS_DB if self.redis_db is None else self.redis_db
        return f"redis://{self.redis_host or '127.0.0.1'}:{self.redis_port or 6379}/{db}"


class EspoCRMSettings(Section):
    api_base_url: Url = Field(validation_alias="ESPOCRM_API_BASE_URL")
    """Without trailing slash, e.g. `https://crm.example/api/v1`."""
    api_key: Secret = Field(validation_alias="ESPOCRM_API_KEY")
    api_secret: Secret | None = Field(None, validation_alias="ESPOCRM_API_SECRET")
    """Set → HMAC auth (`X-Hmac-Authorization`); unset → `X-Api-Key`."""
    timeout_seconds: Seconds = Field(30.0, validation_alias="ESPOCRM_API_TIMEOUT_SECONDS")
    metadata_ttl_seconds: Annotated[int, p.integer(0)] = Field(300, validation_alias="ESPOCRM_METADATA_TTL_SECONDS")
    webhook_secrets: Annotated[dict[str, SecretStr], p.env_value(p.webhook_secrets)] = Field(
        default_factory=dict, validation_alias="ESPOCRM_WEBHOOK_SECRETS"
    )
    """webhook id → secretKey (from `POST Webhook`), for `Signature` verification."""
    webhook_token: Annotated[SecretStr | None, p.env_value(p.webhook_token)] = Field(
        None, validation_alias="ESPOCRM_WEBHOOK_TOKEN"
    )
    """With webhook_secrets set too, BOTH are required on every request (services.webhooks.intake)."""
    webhook_replay_seconds: Annotated[int, p.integer(0, 86400)] = Field(
        WEBHOOK_REPLAY_DEFAULT_SECONDS, validation_alias="ESPOCRM_WEBHOOK_REPLAY_SECONDS"
    )
    """Signature mode: an accepted body is remembered this long and refused (409) when it comes
    again; 0 = no replay record."""

    @property
    def uses_hmac(self) -> bool:
        return self.api_secret is not None

    @property
    def webhook_auth_mode(self) -> WebhookAuthMode:
        """SIGNATURE when secrets are set (a token set as well is required in addition), else
        TOKEN when a token is set, else OPEN (sandbox only: production refuses to start)."""
        if self.webhook_secrets:
            return WebhookAuthMode.SIGNATURE
        if self.webhook_token is not None:
            return WebhookAuthMode.TOKEN
        return WebhookAuthMode.OPEN


class AdvowareSettings(Section):
    api_base_url: UrlWithSlash = Field(validation_alias="ADVOWARE_API_BASE_URL")
    """With trailing slash, so `f"{api_base_url}api/v1/Akten"` works."""
    token_url: Url = Field(validation_alias="ADVOWARE_TOKEN_URL")
    app_id: Text = Field(validation_alias="ADVOWARE_APP_ID")
    api_key: Annotated[SecretStr, p.env_value(p.base64_key)] = Field(validation_alias=AliasChoices("ADVOWARE_API_KEY", "ADVOWARE_API_SECRET"))
    """Base64 as issued by Advoware; `api_key_bytes()` gives the decoded HMAC key. The developer
    guide calls it ADVOWARE_API_SECRET: read when ADVOWARE_API_KEY is unset (aliases.py)."""
    kanzlei: Text = Field(validation_alias="ADVOWARE_KANZLEI")
    database: Text = Field(validation_alias="ADVOWARE_DATABASE")
    user: Text = Field(validation_alias="ADVOWARE_USER")
    password: Secret = Field(validation_alias="ADVOWARE_PASSWORD")
    role: Annotated[int, p.integer(0)] = Field(ADVOWARE_DEFAULT_ROLE, validation_alias="ADVOWARE_ROLE")
    product: Annotated[int, p.integer(0)] = Field(ADVOWARE_DEFAULT_PRODUCT, validation_alias="ADVOWARE_PRODUCT")
    timeout_seconds: Seconds = Field(30.0, validation_alias="ADVOWARE_API_TIMEOUT_SECONDS")
    token_refresh_margin_seconds: Annotated[float, p.number(exclusive=False)] = Field(
        60.0, validation_alias="ADVOWARE_TOKEN_REFRESH_MARGIN_SECONDS"
    )
    token_min_refresh_seconds: Annotated[float, p.number(exclusive=False)] = Field(
        ADVOWARE_TOKEN_MIN_REFRESH_SECONDS, validation_alias="ADVOWARE_TOKEN_MIN_REFRESH_SECONDS"
    )
    """A 401 drops the shared token only when it is at least this old (no login storm)."""
    proxy_token: Annotated[SecretStr | None, p.env_value(p.proxy_token)] = Field(None, validation_alias="ADVOWARE_PROXY_TOKEN")
    """One unnamed caller (logged as `default`), kept for compatibility; >= 32 bytes."""
    proxy_tokens: Annotated[dict[str, SecretStr], p.env_value(p.proxy_tokens)] = Field(
        default_factory=dict, validation_alias="ADVOWARE_PROXY_TOKENS"
    )
    """Named callers `name:token,...` (several at once: attribution, rotation); each >= 32 bytes."""
    proxy_allowed_prefixes: Annotated[tuple[str, ...], p.env_value(p.proxy_allow_list)] = Field(
        (), validation_alias="ADVOWARE_PROXY_ALLOWED_PREFIXES"
    )
    """`[METHODS:]prefix` entries the proxy forwards (parsers.proxy_allow_list); required in production."""
    proxy_auth_failure_limit: Annotated[int, p.integer(1)] = Field(
        ADVOWARE_PROXY_AUTH_FAILURE_LIMIT, validation_alias="ADVOWARE_PROXY_AUTH_FAILURE_LIMIT"
    )
    """Failed proxy authentications per client address and window before it is answered 429."""
    proxy_auth_failure_window_seconds: Seconds = Field(
        ADVOWARE_PROXY_AUTH_FAILURE_WINDOW_SECONDS, validation_alias="ADVOWARE_PROXY_AUTH_FAILURE_WINDOW_SECONDS"
    )
    proxy_max_body_bytes: Annotated[int, p.integer(1)] = Field(
        ADVOWARE_PROXY_DEFAULT_MAX_BODY_BYTES, validation_alias="ADVOWARE_PROXY_MAX_BODY_BYTES"
    )
    proxy_timeout_seconds: Seconds = Field(25.0, validation_alias="ADVOWARE_PROXY_TIMEOUT_SECONDS")
    """How long the proxy waits for Advoware; below the engine's 30 s so the proxy answers 504 itself."""

    @model_validator(mode="after")
    def _distinct_callers(self) -> AdvowareSettings:
        if self.proxy_token is not None and ADVOWARE_PROXY_DEFAULT_CALLER in self.proxy_tokens:
            raise ValueError(f"ADVOWARE_PROXY_TOKENS may not name a caller {ADVOWARE_PROXY_DEFAULT_CALLER!r} "
                             "while ADVOWARE_PROXY_TOKEN is set (that is its name)")
        single = self.proxy_token.get_secret_value() if self.proxy_token is not None else None
        if single is not None and any(t.get_secret_value() == single for t in self.proxy_tokens.values()):
            raise ValueError("ADVOWARE_PROXY_TOKEN is also a token in ADVOWARE_PROXY_TOKENS (give every caller its own)")
        return self

    @property
    def proxy_callers(self) -> dict[str, SecretStr]:
        """Every caller the proxy accepts, by name (ADVOWARE_PROXY_TOKEN as `default`); empty = proxy off."""
        callers = dict(self.proxy_tokens)
        if self.proxy_token is not None:
            callers[ADVOWARE_PROXY_DEFAULT_CALLER] = self.proxy_token
        return callers

    def api_key_bytes(self) -> bytes:
        """The decoded API key: the HMAC-SHA512 key of the token request."""
        return base64.b64decode(self.api_key.get_secret_value(), validate=True)


class XAISettings(Section):
    api_base_url: Url = Field(XAI_PROD_API_BASE_URL, validation_alias="XAI_API_BASE_URL")
    """Files API, without trailing slash."""
    management_base_url: Url = Field(XAI_PROD_MANAGEMENT_BASE_URL, validation_alias="XAI_MANAGEMENT_BASE_URL")
    """Collections management API, without trailing slash."""
    api_key: Secret = Field(validation_alias="XAI_API_KEY")
    management_key: Secret = Field(validation_alias="XAI_MANAGEMENT_KEY")
    collection_rules: Annotated[dict[str, CollectionRule], p.env_value(p.collection_rules)] = Field(
        default_factory=lambda: p.collection_rules(DEFAULT_XAI_COLLECTION_RULES),
        validation_alias="XAI_COLLECTION_RULES",
    )
    """EspoCRM entity type → rule deciding whether the entity should have a collection."""

    def collection_rule_for(self, entity_type: str) -> CollectionRule | None:
        return self.collection_rules.get(str(entity_type))

    def should_have_collection(self, entity_type: str, record: Any) -> bool:
        """False for entity types without a rule."""
        rule = self.collection_rule_for(entity_type)
        return rule is not None and rule.matches(record)


class GoogleSettings(Section):
    calendar_base_url: Url = Field(GOOGLE_PROD_CALENDAR_BASE_URL, validation_alias="GOOGLE_CALENDAR_BASE_URL")
    """Without trailing slash, e.g. `https://www.googleapis.com/calendar/v3`."""
    token_url: Url = Field(GOOGLE_PROD_TOKEN_URL, validation_alias="GOOGLE_TOKEN_URL")
    service_account_file: Annotated[Path | None, p.env_value(p.service_account_file)] = Field(
        None, validation_alias="GOOGLE_SERVICE_ACCOUNT_FILE"
    )
    """Validated at load: exists, JSON object with client_email and private_key. Required in
    production unless a static token is set (the loader checks that: it depends on the mode)."""
    static_token: Secret | None = Field(None, validation_alias="GOOGLE_CALENDAR_STATIC_TOKEN")
    """A fixed bearer token (sandbox); when set it is used instead of the service account."""
    delegated_subject: Text | None = Field(None, validation_alias="GOOGLE_DELEGATED_SUBJECT")
    scope: str = GOOGLE_CALENDAR_SCOPE

    @property
    def uses_static_token(self) -> bool:
        return self.static_token is not None


class CalendarSettings(Section):
    mapping: Annotated[dict[str, str], p.env_value(p.calendar_mapping)] = Field(
        default_factory=dict, validation_alias="CALENDAR_MAPPING"
    )
    """Employee Kürzel → Google calendar id (CALENDAR_MAPPING inline, or the JSON file
    CALENDAR_MAPPING_FILE; not both). Empty = calendar sync has nothing to do."""
    sync_past_days: Annotated[int, p.integer(0, 3650)] = Field(30, validation_alias="CALENDAR_SYNC_PAST_DAYS")
    sync_future_days: Annotated[int, p.integer(0, 3650)] = Field(180, validation_alias="CALENDAR_SYNC_FUTURE_DAYS")
    conflict_rule: Annotated[ConflictRule, p.choice(ConflictRule)] = Field(
        ConflictRule.NEWEST_WINS, validation_alias="CALENDAR_CONFLICT_RULE"
    )

    @classmethod
    def env_names(cls) -> tuple[str, ...]:
        return (*super().env_names(), "CALENDAR_MAPPING_FILE")

    @model_validator(mode="before")
    @classmethod
    def _mapping_file(cls, data: Any) -> Any:
        """CALENDAR_MAPPING_FILE is read into the mapping; both variables at once is an error."""
        if not isinstance(data, dict) or "CALENDAR_MAPPING_FILE" not in data:
            return data
        data = dict(data)
        path = data.pop("CALENDAR_MAPPING_FILE")
        if "CALENDAR_MAPPING" in data or "mapping" in data:
            raise ValueError("CALENDAR_MAPPING and CALENDAR_MAPPING_FILE are both set: use only one")
        try:
            data["CALENDAR_MAPPING"] = p.calendar_mapping_file(str(path))
        except ValueError as exc:
            raise ValueError(f"CALENDAR_MAPPING_FILE: {exc}") from None
        return data


class LedgerSettings(Section):
    """The sync ledger (services.platform.ledger): delivery, retries and dead letters of queued work."""

    key_prefix: Annotated[str, p.env_value(p.key_prefix)] = Field("ledger", validation_alias="LEDGER_KEY_PREFIX")
    """Redis keys `{prefix}:mark:{kind}:{id}`, `{prefix}:due:{kind}`, ..."""
    backoff_scale: Seconds = Field(1.0, validation_alias="LEDGER_BACKOFF_SCALE")
    """Multiplies every kind's retry delays (tests: e.g. 0.01)."""
    time_box_scale: Seconds = Field(1.0, validation_alias="LEDGER_TIME_BOX_SCALE")
    """Multiplies every kind's time-box (tests: a hung handler is cancelled quickly)."""
    grace_seconds: Annotated[float, p.number(exclusive=False)] = Field(30.0, validation_alias="LEDGER_GRACE_SECONDS")
    """A fresh mark's event is enqueued at once; the sweeper re-enqueues it only if it was
    not handled within this grace."""
    claim_lease_seconds: Seconds = Field(60.0, validation_alias="LEDGER_CLAIM_LEASE_SECONDS")
    """A running handler renews its claim every third of this; a dead worker's claim runs out after it."""
    requeue_lease_seconds: Seconds = Field(60.0, validation_alias="LEDGER_REQUEUE_LEASE_SECONDS")
    """A mark the sweeper re-enqueued is not re-enqueued again before this."""
    sweep_cron: Annotated[str, p.env_value(p.cron_expression)] = Field(
        "*/30 * * * * *", validation_alias="LEDGER_SWEEP_CRON"
    )
    """The sweeper's schedule (6 fields, seconds first, UTC)."""
    sweep_batch: Annotated[int, p.integer(1, 10000)] = Field(200, validation_alias="LEDGER_SWEEP_BATCH")
    sweep_max_batches: Annotated[int, p.integer(1, 1000)] = Field(10, validation_alias="LEDGER_SWEEP_MAX_BATCHES")
    """The sweeper re-enqueues at most sweep_batch × sweep_max_batches marks per run."""
    concurrency: Annotated[dict[str, int], p.env_value(p.ledger_concurrency)] = Field(
        default_factory=dict, validation_alias="LEDGER_CONCURRENCY"
    )
    """`kind:n,...`: runs of a kind one worker holds at once, in place of the defaults of
    services/platform/ledger/policies.py (kinds not named keep theirs; reasoning in README)."""
    engine_queue_concurrency: Annotated[int, p.integer(1, 1024)] = Field(
        ENGINE_QUEUE_CONCURRENCY_DEFAULT, validation_alias="III_QUEUE_CONCURRENCY"
    )
    """The engine's queue runs at most this many jobs of one topic at once (the shipped configs
    read the same variable): a kind configured above it would be capped by the engine."""

    @model_validator(mode="after")
    def _engine_does_not_cap(self) -> LedgerSettings:
        over = sorted(k for k, n in self.concurrency.items() if n > self.engine_queue_concurrency)
        if over:
            raise ValueError(f"LEDGER_CONCURRENCY for {', '.join(over)} is above III_QUEUE_CONCURRENCY "
                             f"({self.engine_queue_concurrency}), which would cap it: raise III_QUEUE_CONCURRENCY too")
        return self


class DeletionGuardSettings(Section):
    """The mass-deletion guard (services.platform.deletion_guard): deletes caused by "not found
    on the other side" within an hour, shared by every worker through Redis."""

    max_per_hour: Annotated[int, p.integer(0, 100000)] = Field(5, validation_alias="DELETE_GUARD_MAX_PER_HOUR")
    """More such deletes within an hour trip the guard: every further one waits (the record is
    marked failed) until an operator confirms (`python -m services.platform.deletion_guard
    confirm`). 0: every such delete waits for a confirm."""
    key_prefix: Annotated[str, p.env_value(p.key_prefix)] = Field("deletes", validation_alias="DELETE_GUARD_KEY_PREFIX")
    """Redis keys `{prefix}:window|tripped|held|approved|tombstones` (the tombstones: the
    deleted records' last state, for `restore`)."""
    tombstones_keep: Annotated[int, p.integer(1, 1000000)] = Field(10000, validation_alias="DELETE_TOMBSTONES_KEEP")
    """How many tombstones are kept (newest first)."""


class OpsSettings(Section):
    """The operators' tools (services.ops): the drift audit's nightly schedule, its bounds, and
    where its last report is kept."""

    audit_cron: Annotated[str, p.env_value(p.cron_expression)] = Field("0 30 2 * * *", validation_alias="OPS_AUDIT_CRON")
    """The nightly drift audit (6 fields, seconds first, UTC); it logs a summary and keeps the report."""
    audit_max_calls: Annotated[int, p.integer(10, 1000000)] = Field(5000, validation_alias="OPS_AUDIT_MAX_CALLS")
    """API calls one audit may make (all systems together); past it the report says what it did not check."""
    audit_max_seconds: Annotated[float, p.number()] = Field(900.0, validation_alias="OPS_AUDIT_MAX_SECONDS")
    """How long the cron's audit may run (an audit started over HTTP stops earlier, within the REST timeout)."""
    key_prefix: Annotated[str, p.env_value(p.key_prefix)] = Field("ops", validation_alias="OPS_KEY_PREFIX")
    """Redis keys `{prefix}:audit:last` (the last report) and `{prefix}:audit:history` (summaries)."""


class PartiesSettings(Section):
    """The party cron's reconcile (services.parties.reconcile): what each 10-minute run reads
    besides the changes since its bookmarks."""

    stale_slice: Annotated[int, p.integer(0, 100000)] = Field(20, validation_alias="RECONCILE_STALE_SLICE")
    """Linked records (parties and bank accounts) re-verified per run, the stalest first:
    every record is re-verified at least every max(stale_after, N / slice × 10 min) + 10 min
    (5,000 records: about 42 h). Each costs its sync (about 8 calls with one bank account)."""
    stale_after_hours: Annotated[float, p.number(exclusive=False)] = Field(24.0, validation_alias="RECONCILE_STALE_AFTER_HOURS")
    """A record verified (or queued by the rotation) more recently than this is not re-verified."""
    full_every_hours: Annotated[float, p.number(exclusive=False)] = Field(168.0, validation_alias="RECONCILE_FULL_EVERY_HOURS")
    """A full reconcile (both sides' parties listed entirely) this long after the last one;
    0: only when asked (`python -m services.parties full-reconcile`)."""


class SimulatorSettings(Section):
    espocrm_port: Port = Field(SIM_DEFAULT_PORTS["espocrm"], validation_alias="SIM_ESPOCRM_PORT")
    advoware_port: Port = Field(SIM_DEFAULT_PORTS["advoware"], validation_alias="SIM_ADVOWARE_PORT")
    xai_port: Port = Field(SIM_DEFAULT_PORTS["xai"], validation_alias="SIM_XAI_PORT")
    google_port: Port = Field(SIM_DEFAULT_PORTS["google"], validation_alias="SIM_GOOGLE_PORT")


class Settings(BaseModel):
    """Everything the services need. Build it with `load_settings()`/`get_settings()`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: AppMode
    log_level: str = "INFO"
    redis_url: str = Field(default=DEFAULT_REDIS_URL, repr=False)
    """May hold a password: left out of repr, and dumps show `redis_url_redacted`."""
    lock_ttl_seconds: int = LOCK_TTL_DEFAULT
    lock_lease_seconds: int = LOCK_LEASE_DEFAULT
    """How long an entity lock lives in Redis between its holder's renewals (every third of
    it): how long a killed worker blocks its entities at most (services.platform.locks)."""
    espocrm: EspoCRMSettings
    advoware: AdvowareSettings
    xai: XAISettings
    google: GoogleSettings
    calendar: CalendarSettings = Field(default_factory=lambda: CalendarSettings.model_validate({}))
    simulators: SimulatorSettings = Field(default_factory=lambda: SimulatorSettings.model_validate({}))
    ledger: LedgerSettings = Field(default_factory=lambda: LedgerSettings.model_validate({}))
    deletes: DeletionGuardSettings = Field(default_factory=lambda: DeletionGuardSettings.model_validate({}))
    parties: PartiesSettings = Field(default_factory=lambda: PartiesSettings.model_validate({}))
    ops: OpsSettings = Field(default_factory=lambda: OpsSettings.model_validate({}))
    ops_token: SecretStr | None = None
    """Bearer token of the operator endpoints (`/ops/...`, services.ops.api); unset → 503."""
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
            "webhook_token_required": self.espocrm.webhook_token is not None,
            "webhook_replay_seconds": self.espocrm.webhook_replay_seconds,
            "advoware": self.advoware.api_base_url,
            "xai": self.xai.api_base_url,
            "xai_management": self.xai.management_base_url,
            "xai_collection_rules": {k: f"{r.field}={r.value}" for k, r in self.xai.collection_rules.items()},
            "google_calendar": self.google.calendar_base_url,
            "calendars": sorted(self.calendar.mapping),
            "advoware_proxy_enabled": bool(self.advoware.proxy_callers),
            "advoware_proxy_callers": sorted(self.advoware.proxy_callers),
            "advoware_proxy_allowed": list(self.advoware.proxy_allowed_prefixes),
            "ledger": {"key_prefix": self.ledger.key_prefix, "sweep_cron": self.ledger.sweep_cron,
                       "backoff_scale": self.ledger.backoff_scale, "grace_seconds": self.ledger.grace_seconds},
            "ops_api_enabled": self.ops_token is not None,
            "ops_audit_cron": self.ops.audit_cron,
        }
