"""`iii-config.yaml` for the stand-in: the real engine's format, read the real engine's way.

The file is a list of modules (`class` + `config`), with `${VAR}` / `${VAR:default}`
expanded from the environment in the raw text (comments included) before YAML parsing,
exactly like `iii -c` (engine/src/modules/config.rs 47-110: a variable with neither value
nor default stops the engine). Unknown top-level keys are ignored (no `deny_unknown_fields`
on `EngineConfig`); an unknown module class stops the engine ("Unknown module class", config.rs
261-277). Module configs keep the real engine's keys (the real engine rejects unknown keys in
most of them). Relative paths are relative to the engine's working directory, as in the
real engine (`PathBuf::from(file_path)`). Settings that only the stand-in has live in a
top-level `local_engine:` mapping, which the real engine ignores.

Listeners bind to loopback unless configured otherwise (a deviation: the real engine binds
the worker port to `0.0.0.0`, main.rs 63-66, and the REST module's `host` defaults to
`0.0.0.0`, rest_api/config.rs 13-15). `local_engine.worker_host` moves the worker port; a
non-loopback worker port needs `local_engine.worker_secret` (at least 32 bytes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_PATTERN = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")

REST_CLASS = "modules::api::RestApiModule"
QUEUE_CLASS = "modules::queue::QueueModule"
STATE_CLASS = "modules::state::StateModule"
CRON_CLASS = "modules::cron::CronModule"
EXEC_CLASS = "modules::shell::ExecModule"
OTEL_CLASS = "modules::observability::OtelModule"

# Every class `register_module!` knows in engine 0.8.3; the stand-in ignores the ones it lacks.
KNOWN_CLASSES = frozenset({
    REST_CLASS, QUEUE_CLASS, STATE_CLASS, CRON_CLASS, EXEC_CLASS, OTEL_CLASS,
    "modules::bridge_client::BridgeClientModule", "modules::http_functions::HttpFunctionsModule",
    "modules::kv_server::KvServer", "modules::pubsub::PubSubModule", "modules::stream::StreamModule",
    "modules::telemetry::TelemetryModule", "modules::worker::WorkerModule",
})

QUEUE_BUILTIN = "modules::queue::BuiltinQueueAdapter"
QUEUE_REDIS = "modules::queue::RedisAdapter"
STATE_KV = "modules::state::adapters::KvStore"
STATE_REDIS = "modules::state::adapters::RedisAdapter"
CRON_KV = "modules::cron::KvCronAdapter"
CRON_REDIS = "modules::cron::RedisCronAdapter"


class EngineConfigError(ValueError):
    """The config file is missing, unparsable, or names a variable that is not set."""


def expand_env(text: str, env: Mapping[str, str] | None = None) -> str:
    """Replace `${VAR}` and `${VAR:default}`; a variable with neither value nor default is an error."""
    environ = os.environ if env is None else env
    missing: list[str] = []

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    out = ENV_PATTERN.sub(repl, text)
    if missing:
        raise EngineConfigError(
            "Environment variable(s) not set and no default provided: " + ", ".join(sorted(set(missing)))
        )
    return out


LOOPBACK = "127.0.0.1"


@dataclass
class RestConfig:
    port: int = 3111
    host: str = LOOPBACK  # the real engine's default is 0.0.0.0 (rest_api/config.rs 13-15)
    default_timeout_ms: int = 30000
    concurrency_request_limit: int = 1024
    cors_origins: list[str] = field(default_factory=list)
    cors_methods: list[str] = field(default_factory=list)


@dataclass
class QueueConfig:
    adapter: str = QUEUE_BUILTIN
    max_attempts: int = 3
    backoff_ms: int = 1000
    concurrency: int = 10
    poll_interval_ms: int = 100
    mode: str = "concurrent"
    store_method: str = "file_based"
    file_path: str = "./data/queue_store"
    redis_url: str = "redis://localhost:6379"
    save_interval_ms: int = 5000  # file_based: written to disk only this often (builtins/kv.rs 210-213)


@dataclass
class StoreConfig:
    """A state or cron adapter. `store_method` defaults to `in_memory` (builtins/kv.rs 186-193)."""

    adapter: str
    store_method: str = "in_memory"
    file_path: str = "./data/state_store"
    redis_url: str = "redis://localhost:6379"


@dataclass
class ExecConfig:
    """shell/config.rs: `watch: Option<Vec<String>>` (None = no watcher), `exec: Vec<String>`."""

    watch: list[str] | None = None
    exec: list[str] = field(default_factory=list)


@dataclass
class LocalEngineConfig:
    """Stand-in-only settings (top-level `local_engine:`)."""

    console_host: str = "127.0.0.1"
    console_port: int = 3113
    console_token: str = ""
    console_session_ttl_s: int = 8 * 3600
    console_cookie_secure: str = "auto"  # auto: Secure when the request came over TLS (or X-Forwarded-Proto https); always; never
    worker_host: str = LOOPBACK
    worker_secret: str = ""
    max_body_bytes: int = 0  # 0: no limit, like the real engine (H4)
    body_timeout_ms: int = 0  # 0: the REST module's default_timeout
    logs_max: int = 50_000
    traces_max: int = 10_000
    data_dir: str = "./data"
    log_file: str = ""


@dataclass
class EngineConfig:
    port: int = 49134
    host: str = LOOPBACK  # the worker port's address: local_engine.worker_host
    rest: RestConfig | None = None
    queue: QueueConfig | None = None
    state: StoreConfig | None = None
    cron: StoreConfig | None = None
    exec: list[ExecConfig] = field(default_factory=list)
    otel_enabled: bool = True
    local: LocalEngineConfig = field(default_factory=LocalEngineConfig)
    base_dir: Path = field(default_factory=Path.cwd)
    raw: dict[str, Any] = field(default_factory=dict)

    def path(self, p: str) -> Path:
        """A path from the config, relative to the engine's working directory (`base_dir`)."""
        q = Path(p)
        return q if q.is_absolute() else (self.base_dir / q)


def _adapter(cfg: Mapping[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    if not cfg:
        return None, {}
    adapter = cfg.get("adapter") or {}
    if not isinstance(adapter, Mapping):
        raise EngineConfigError("adapter must be a mapping with 'class' and optional 'config'")
    return adapter.get("class"), dict(adapter.get("config") or {})


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise EngineConfigError(f"{name} must be an integer, got {value!r}") from exc


def parse_config(data: Mapping[str, Any], base_dir: Path | None = None) -> EngineConfig:
    """Build an EngineConfig from the parsed YAML document."""
    if not isinstance(data, Mapping):
        raise EngineConfigError("the config must be a mapping with 'modules'")
    cfg = EngineConfig(raw=dict(data), base_dir=base_dir or Path.cwd())
    cfg.port = _int(data.get("port", 49134), "port")
    modules = data.get("modules") or []
    if not isinstance(modules, list):
        raise EngineConfigError("'modules' must be a list")
    for entry in modules:
        if not isinstance(entry, Mapping) or "class" not in entry:
            raise EngineConfigError(f"every module needs a 'class': {entry!r}")
        cls = str(entry["class"])
        if cls not in KNOWN_CLASSES:
            raise EngineConfigError(f"Failed to create {cls}: Unknown module class: {cls}")
        mc = dict(entry.get("config") or {})
        if cls == REST_CLASS:
            unknown = set(mc) - {"port", "host", "default_timeout", "concurrency_request_limit", "cors"}
            if unknown:  # RestApiConfig: deny_unknown_fields (modules/rest_api/config.rs 25-42)
                raise EngineConfigError(f"Failed to create {cls}: unknown field(s) {sorted(unknown)}")
            cors = mc.get("cors") or {}
            cfg.rest = RestConfig(
                port=_int(mc.get("port", 3111), "RestApiModule.port"),
                host=str(mc.get("host", LOOPBACK)),
                default_timeout_ms=_int(mc.get("default_timeout", 30000), "RestApiModule.default_timeout"),
                concurrency_request_limit=_int(mc.get("concurrency_request_limit", 1024), "concurrency_request_limit"),
                cors_origins=list(cors.get("allowed_origins") or []),
                cors_methods=list(cors.get("allowed_methods") or []),
            )
        elif cls == QUEUE_CLASS:
            adapter, ac = _adapter(mc)
            adapter = adapter or QUEUE_BUILTIN
            if adapter not in (QUEUE_BUILTIN, QUEUE_REDIS):
                raise EngineConfigError(f"queue adapter {adapter!r} is not supported by the local engine")
            cfg.queue = QueueConfig(
                adapter=adapter,
                max_attempts=_int(ac.get("max_attempts", 3), "max_attempts"),
                backoff_ms=_int(ac.get("backoff_ms", 1000), "backoff_ms"),
                concurrency=_int(ac.get("concurrency", 10), "concurrency"),
                poll_interval_ms=_int(ac.get("poll_interval_ms", 100), "poll_interval_ms"),
                mode="fifo" if ac.get("mode") == "fifo" else "concurrent",
                store_method=str(ac.get("store_method", "file_based")),
                file_path=str(ac.get("file_path", "./data/queue_store")),
                redis_url=str(ac.get("redis_url", "redis://localhost:6379")),
                save_interval_ms=_int(ac.get("save_interval_ms", 5000), "save_interval_ms"),
            )
        elif cls in (STATE_CLASS, CRON_CLASS):
            unknown = set(mc) - {"adapter"}
            if unknown:  # StateModuleConfig / CronModuleConfig: deny_unknown_fields
                raise EngineConfigError(f"Failed to create {cls}: unknown field(s) {sorted(unknown)}")
            adapter, ac = _adapter(mc)
            default = STATE_KV if cls == STATE_CLASS else CRON_KV
            adapter = adapter or default
            allowed = (STATE_KV, STATE_REDIS) if cls == STATE_CLASS else (CRON_KV, CRON_REDIS)
            if adapter not in allowed:
                raise EngineConfigError(f"adapter {adapter!r} is not supported by the local engine for {cls}")
            store = StoreConfig(
                adapter=adapter,
                store_method=str(ac.get("store_method", "in_memory")),
                file_path=str(ac.get("file_path", "./data/state_store" if cls == STATE_CLASS else "./data/cron_store")),
                redis_url=str(ac.get("redis_url", "redis://localhost:6379")),
            )
            if cls == STATE_CLASS:
                cfg.state = store
            else:
                cfg.cron = store
        elif cls == EXEC_CLASS:
            unknown = set(mc) - {"watch", "exec"}
            if unknown:
                raise EngineConfigError(f"ExecModule: unknown field(s) {sorted(unknown)}")
            exec_list, watch = mc.get("exec"), mc.get("watch")
            if not isinstance(exec_list, list) or not all(isinstance(c, str) for c in exec_list):
                raise EngineConfigError("ExecModule: 'exec' must be a list of command strings")
            if watch is not None and (not isinstance(watch, list) or not all(isinstance(w, str) for w in watch)):
                raise EngineConfigError("ExecModule: 'watch' must be a list of glob strings")
            cfg.exec.append(ExecConfig(watch=None if watch is None else list(watch), exec=list(exec_list)))
        elif cls == OTEL_CLASS:
            enabled = mc.get("enabled", True)
            cfg.otel_enabled = str(enabled).lower() not in ("false", "0", "no", "off")
        # The other known modules (stream, pubsub, kv_server, ...) are accepted and ignored.
    local = data.get("local_engine") or {}
    if not isinstance(local, Mapping):
        raise EngineConfigError("'local_engine' must be a mapping")
    lc = LocalEngineConfig()
    for key in lc.__dataclass_fields__:
        if key in local and local[key] is not None:  # `key:` with an empty ${VAR:} is YAML null
            current = getattr(lc, key)
            setattr(lc, key, _int(local[key], key) if isinstance(current, int) else str(local[key]))
    cfg.local = lc
    cfg.host = lc.worker_host
    return cfg


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> EngineConfig:
    """Read, expand and parse a config file."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError as exc:
        raise EngineConfigError(f"Config file not found: '{p}'") from exc
    try:
        data = yaml.safe_load(expand_env(text, env)) or {}
    except yaml.YAMLError as exc:
        raise EngineConfigError(f"Failed to parse config file '{p}': {exc}") from exc
    return parse_config(data, base_dir=Path.cwd())
