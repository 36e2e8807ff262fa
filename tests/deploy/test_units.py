"""The production deployment files: systemd units, the engine config, the firewall rules.

`systemd-analyze verify` checks the units (Debian's systemd; make test installs it when missing,
which is safe in a container: the package does not replace init and starts nothing there).
The other tests read the files for what production depends on: the engine restarts and takes its
worker down with it, telemetry is off (P4), the worker is started through the keep-alive wrapper
with III_URL (P1), the REST module has only the keys the real engine accepts (H5), the queue is
the builtin adapter saved to a file the unit may write (Q2, Q5), and nobody but this host reaches
the worker port (P2). Row names are those of the semantics table in ARCHITECTURE.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from iii_local.config import expand_env, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENGINE_UNIT = DEPLOY / "motia.service"
CONSOLE_UNIT = DEPLOY / "iii-console.service"
CONFIG = DEPLOY / "iii-config.production.yaml"
NFT_RULES = DEPLOY / "bitbylaw-motia.nft"
NGINX_DROP_IN = DEPLOY / "nginx" / "nginx-restart.conf"
DEBIAN_NGINX_UNIT = Path("/lib/systemd/system/nginx.service")

# engine/src/modules/rest_api/config.rs 26-42 (serde deny_unknown_fields).
REST_KEYS = {"port", "host", "default_timeout", "concurrency_request_limit", "cors"}
# builtins/queue.rs QueueConfig::from_value + builtins/kv.rs BuiltinKvStore::new: every other key
# is silently ignored by the real engine, so a misspelt one would fall back to its default.
BUILTIN_QUEUE_KEYS = {"max_attempts", "backoff_ms", "concurrency", "poll_interval_ms", "mode", "store_method", "file_path", "save_interval_ms"}
# The module and adapter classes the real engine 0.8.3 registers (register_module!/register_adapter!).
KNOWN_CLASSES = {
    "modules::api::RestApiModule",
    "modules::queue::QueueModule",
    "modules::queue::BuiltinQueueAdapter",
    "modules::queue::RedisAdapter",
    "modules::state::StateModule",
    "modules::state::adapters::KvStore",
    "modules::state::adapters::RedisAdapter",
    "modules::cron::CronModule",
    "modules::cron::KvCronAdapter",
    "modules::cron::RedisCronAdapter",
    "modules::observability::OtelModule",
    "modules::shell::ExecModule",
}


def unit_entries(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as section → key → values (a key may repeat, e.g. Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{path.name}: unexpected line {line!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service(path: Path) -> dict[str, list[str]]:
    return unit_entries(path)["Service"]


def one(entries: dict[str, list[str]], key: str) -> str:
    values = entries.get(key, [])
    assert len(values) == 1, f"{key}: expected one value, got {values}"
    return values[0]


def raw_config(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The config as the real engine reads it: ${VAR:default} replaced in the raw text, then YAML (P5)."""
    return yaml.safe_load(expand_env(CONFIG.read_text(), env or {}))


def module(config: dict[str, Any], cls: str) -> dict[str, Any]:
    found = [m for m in config["modules"] if m["class"] == cls]
    assert len(found) == 1, f"expected one {cls}, got {len(found)}"
    return found[0].get("config") or {}


# ---------------------------------------------------------------- systemd-analyze verify


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """Both units together (the console requires the engine unit); binaries this machine lacks
    (the iii engine and console) become stubs, everything else is verified as shipped."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: run `make test` (it installs Debian's systemd) or apt-get install systemd")
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    names = []
    for unit in (ENGINE_UNIT, CONSOLE_UNIT):
        text = unit.read_text()
        for binary in re.findall(r"^ExecStart=[-@+!:]*(\S+)", text, re.M):
            if not os.access(binary, os.X_OK):
                text = text.replace(f"={binary} ", f"={stub} ")
        (tmp_path / unit.name).write_text(text)
        names.append(unit.name)
    result = subprocess.run([analyze, "verify", "--man=no", *names], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if any(n in line for n in names) or str(tmp_path) in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_nginx_restart_drop_in_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """Debian's nginx.service has no Restart=; the drop-in adds it (verified on Debian's unit)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: run `make test` (it installs Debian's systemd) or apt-get install systemd")
    if not DEBIAN_NGINX_UNIT.is_file():
        pytest.fail("Debian's nginx is not installed: run `make test` (it installs it) or apt-get install nginx")
    assert one(service(NGINX_DROP_IN), "Restart") in ("on-failure", "always")
    shutil.copy(DEBIAN_NGINX_UNIT, tmp_path / "nginx.service")
    (tmp_path / "nginx.service.d").mkdir()
    shutil.copy(NGINX_DROP_IN, tmp_path / "nginx.service.d" / "restart.conf")
    result = subprocess.run([analyze, "verify", "--man=no", "nginx.service"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "restart.conf" in line or str(tmp_path) in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


# ---------------------------------------------------------------- the engine unit


def test_engine_unit_restarts_and_takes_the_worker_down_with_it() -> None:
    s = service(ENGINE_UNIT)
    assert one(s, "Restart") == "always"
    # P1: the worker (and its wrapper) setsid away from the engine; only the cgroup holds them.
    assert one(s, "KillMode") == "control-group"
    workdir = one(s, "WorkingDirectory")
    assert one(s, "ExecStart") == f"/usr/local/bin/iii -c {workdir}/deploy/iii-config.production.yaml"
    assert one(s, "EnvironmentFile") == f"{workdir}/.env"
    assert one(s, "User") not in ("root", "0")


def test_engine_unit_turns_telemetry_off_and_runs_in_production_mode() -> None:
    env = service(ENGINE_UNIT).get("Environment", [])
    assert "III_TELEMETRY_ENABLED=false" in env, env  # P4: telemetry/mod.rs check_disabled
    assert "APP_MODE=production" in env, env
    assert "III_TELEMETRY_ENABLED=false" in service(CONSOLE_UNIT).get("Environment", [])


def test_engine_unit_may_write_the_queue_file() -> None:
    """ProtectSystem=strict makes everything read-only but ReadWritePaths: the builtin queue's
    file (Q5) must be inside one of them, and be absolute (the real engine resolves a relative
    file_path from its working directory, the stand-in from the config's folder)."""
    s = service(ENGINE_UNIT)
    assert one(s, "ProtectSystem") == "strict"
    writable = [Path(p) for value in s.get("ReadWritePaths", []) for p in value.split()]
    queue = load_config(CONFIG, env={}).queue
    assert queue is not None
    file_path = Path(queue.file_path)
    assert file_path.is_absolute(), file_path
    assert any(file_path.is_relative_to(w) for w in writable), (file_path, writable)


def test_worker_port_is_closed_to_other_hosts() -> None:
    """P2: the worker port binds 0.0.0.0 unauthenticated. systemd's IPAddressDeny is per cgroup and
    both ways, so on the engine unit it would also cut the worker's calls out; the nftables rules
    drop every connection to the engine's ports that does not come from this host instead."""
    assert "IPAddressDeny" not in service(ENGINE_UNIT)
    config = load_config(CONFIG, env={})
    assert config.rest is not None and config.rest.host == "127.0.0.1"
    rules = NFT_RULES.read_text()
    chain = rules[rules.index("chain input") :]
    loopback = chain.index('iifname "lo" accept')
    drop = re.search(r"tcp dport \{([^}]*)\} drop", chain)
    assert drop and loopback < drop.start(), "loopback is accepted before the drop"
    ports = {int(p) for p in drop.group(1).replace(",", " ").split()}
    assert {config.port, config.rest.port} <= ports, ports


def test_nftables_rules_parse() -> None:
    nft = shutil.which("nft") or ("/usr/sbin/nft" if os.access("/usr/sbin/nft", os.X_OK) else None)
    if nft is None:
        pytest.skip("nft (Debian's nftables) is not installed; the rules are read by test_worker_port_is_closed_to_other_hosts")
    result = subprocess.run([nft, "-c", "-f", str(NFT_RULES)], capture_output=True, text=True, timeout=30)
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN, which this machine does not give")
    assert result.returncode == 0, result.stderr


def test_console_unit_talks_to_loopback_only() -> None:
    s = service(CONSOLE_UNIT)
    assert one(s, "Restart") == "always"
    assert one(s, "IPAddressDeny") == "any" and one(s, "IPAddressAllow") == "localhost"
    assert "--host 127.0.0.1" in one(s, "ExecStart")
    assert ENGINE_UNIT.name in " ".join(unit_entries(CONSOLE_UNIT)["Unit"].get("Requires", []))


# ---------------------------------------------------------------- the engine config


def test_production_config_loads_in_the_stand_in() -> None:
    config = load_config(CONFIG, env={})
    assert config.queue is not None and config.state is not None and config.cron is not None
    assert config.queue.adapter == "modules::queue::BuiltinQueueAdapter"
    assert config.queue.store_method == "file_based"
    assert config.state.adapter == "modules::state::adapters::RedisAdapter"
    assert config.cron.adapter == "modules::cron::RedisCronAdapter"  # C2, with the project's slot claims
    assert len(config.exec) == 1 and not config.exec[0].watch


def test_production_config_uses_only_what_the_real_engine_reads() -> None:
    config = raw_config()
    classes = {m["class"] for m in config["modules"]} | {
        (m.get("config") or {}).get("adapter", {}).get("class") for m in config["modules"] if (m.get("config") or {}).get("adapter")
    }
    assert classes <= KNOWN_CLASSES, classes - KNOWN_CLASSES
    assert set(module(config, "modules::api::RestApiModule")) <= REST_KEYS  # H5
    queue = module(config, "modules::queue::QueueModule")
    assert set(queue) == {"adapter"}  # queue/config.rs deny_unknown_fields
    adapter = queue["adapter"]["config"]
    assert set(adapter) <= BUILTIN_QUEUE_KEYS, set(adapter) - BUILTIN_QUEUE_KEYS
    # Q2/Q5: chosen on purpose, not left to the defaults (in_memory store, 5000 ms, 3 x 1000 ms).
    assert adapter["store_method"] == "file_based"
    assert 0 < int(adapter["save_interval_ms"]) <= 5000
    assert int(adapter["max_attempts"]) >= 1 and int(adapter["backoff_ms"]) > 0
    assert set(module(config, "modules::shell::ExecModule")) <= {"exec", "watch"}


def test_worker_runs_through_the_keep_alive_wrapper_with_iii_url() -> None:
    """P1: the ExecModule sets no III_URL and never restarts; the exec line gives III_URL (from
    III_WORKER_PORT, replaced before YAML parsing: P5) and runs scripts/run_worker.py."""
    config = raw_config({"III_WORKER_PORT": "50123"})
    assert config["port"] == 50123
    exec_module = module(config, "modules::shell::ExecModule")
    assert "watch" not in exec_module
    [line] = exec_module["exec"]
    assert line.startswith("exec ")
    assert "III_URL=ws://127.0.0.1:50123 " in line
    assert line.rstrip().endswith("scripts/run_worker.py")
    assert (ROOT / "scripts" / "run_worker.py").is_file(), "the exec line runs scripts/run_worker.py"
