#!/usr/bin/env python3
"""`make run` (and, with `--watch`, `make dev` = `iii-cli dev`): everything a new user needs,
started in order and stopped together.

1. Settings from `.env`/environment (fails fast, naming every problem).
2. The ports it is about to bind (engine REST and worker port, the simulators', a private
   Redis's): one taken → ONE line naming the process that holds it and what to do, exit 3.
3. Redis: use REDIS_URL if something answers there; otherwise start a private
   `redis-server` (Debian package) on that port with its data under $III_DATA_DIR/redis.
4. Sandbox mode (no real credentials): start the four simulators with demo data.
5. The stand-in iii engine with iii-config.yaml; its ExecModule starts the motia worker
   through scripts/run_worker.py (which restarts it when it dies). `--watch` lists the
   watch globs (III_WATCH_GLOBS) the config's ExecModule reloads the worker on.
6. A banner with the endpoints and a first thing to try.

Stopping: Ctrl-C, SIGTERM or SIGHUP stop the children in reverse order (each in a session of
its own, so a terminal's Ctrl-C reaches only this launcher). Killed outright (SIGKILL), the
launcher cannot stop anything, so each child is tied to it: Linux sends the child SIGTERM when
the launcher dies (PR_SET_PDEATHSIG, scripts/run_worker.die_with_parent, the mechanism the
worker wrapper uses with the engine), and the engine stops its worker. Started by make
(MAKELEVEL set), the launcher is tied to make the same way, so killing `make run` stops it all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dotenv import load_dotenv  # noqa: E402

from iii_local.config import EngineConfigError, load_config  # noqa: E402
from iii_local.iii_cli.ports import EXIT_PORTS_TAKEN, Port, engine_ports, taken, taken_message  # noqa: E402
from scripts.run_worker import die_with_parent  # noqa: E402
from services.clients.errors import ConfigError  # noqa: E402
from services.platform.settings import load_settings  # noqa: E402
from services.platform.settings.constants import SANDBOX_OPS_TOKEN  # noqa: E402


def tied_to(parent: int) -> Callable[[], None]:
    """A Popen `preexec_fn` (or, called at once, the launcher tying itself to make): the process
    gets SIGTERM when `parent` dies, and exits at once if it already has (the parent died
    between fork and prctl)."""

    def setup() -> None:
        die_with_parent(signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return setup


def spawn(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """A child in a session of its own (Ctrl-C reaches only the launcher), tied to the launcher."""
    return subprocess.Popen(cmd, start_new_session=True, preexec_fn=tied_to(os.getpid()), **kwargs)  # noqa: PLW1509 - prctl only


def ports_to_bind(settings: Any, engine_config: Any, redis_url: str) -> tuple[list[Port], list[Port]]:
    """(ports whose being taken stops the start, ports that only cost a feature: the console)."""
    fatal = engine_ports(engine_config)
    if settings.is_sandbox:
        sims = settings.simulators
        for name, port in (("EspoCRM", sims.espocrm_port), ("Advoware", sims.advoware_port), ("xAI", sims.xai_port), ("Google", sims.google_port)):
            fatal.append(Port(port, f"{name} simulator", f"SIM_{name.upper()}_PORT"))
    u = urlparse(redis_url)
    if (u.hostname or "127.0.0.1") in ("127.0.0.1", "localhost") and not port_open("127.0.0.1", u.port or 6379):
        fatal.append(Port(u.port or 6379, "private redis-server", "REDIS_URL"))
    local = engine_config.local
    optional = [Port(local.console_port, "console", "III_CONSOLE_PORT", local.console_host)] if local.console_port > 0 else []
    return fatal, optional


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def wait_port(host: str, port: int, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.time() + timeout
    while not port_open(host, port):
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}")
        if time.time() > deadline:
            raise SystemExit(f"{what} did not come up on {host}:{port}")
        time.sleep(0.1)


def ensure_redis(url: str, procs: list[subprocess.Popen[bytes]]) -> None:
    u = urlparse(url)
    host, port = u.hostname or "127.0.0.1", u.port or 6379
    if port_open(host, port):
        print(f"  redis      {url} (already running)")
        return
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"REDIS_URL points at {host}:{port} and nothing answers there")
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: sudo apt-get install redis-server")
    data = Path(os.environ.get("III_DATA_DIR") or ROOT / "data") / "redis"
    data.mkdir(parents=True, exist_ok=True)
    proc = spawn(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--appendonly", "yes", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    procs.append(proc)
    wait_port("127.0.0.1", port, 10, "redis-server", proc)
    print(f"  redis      {url} (private redis-server, data in {data})")


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


def catch_up(rest: str, engine: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Sandbox: once the worker has registered the steps, fire every cron job once, so the
    demo data (seeded without webhooks) syncs now instead of at the next schedule."""
    deadline = time.time() + timeout
    while True:
        try:
            status = _get(rest + "/_console/status")
            if isinstance(status, dict) and status.get("workers", 0) >= 1 and status.get("functions", 0) > 0:
                break
        except (OSError, ValueError):
            pass
        if engine.poll() is not None or time.time() > deadline:
            print("warning: the worker did not come up; skipping the demo catch-up", file=sys.stderr)
            return
        time.sleep(0.3)
    time.sleep(1.0)  # let the registration settle (all steps register within milliseconds)
    jobs = _get(rest + "/_console/cron")
    for job in jobs.get("jobs", []) if isinstance(jobs, dict) else []:
        req = urllib.request.Request(
            rest + "/_console/cron/trigger",
            data=json.dumps({"function_id": job["function_id"]}).encode(),
            headers={"Content-Type": "application/json", "X-Console-Request": "1"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=120):  # noqa: S310 - loopback
                pass
        except OSError as exc:
            print(f"warning: demo catch-up of {job['function_id']} failed: {exc}", file=sys.stderr)
    print(f"  demo data  synced once ({len(jobs.get('jobs', [])) if isinstance(jobs, dict) else 0} reconcilers fired)")


def ops_token_hint(settings: Any) -> str:
    """The sandbox's public ops token by name, never a token of one's own (a secret)."""
    token = settings.ops_token.get_secret_value() if settings.ops_token else None
    if token is None:
        return "unset: OPS_TOKEN in .env"
    return SANDBOX_OPS_TOKEN + "   (the public sandbox default)" if token == SANDBOX_OPS_TOKEN else "OPS_TOKEN from .env"


def banner(settings: object, rest: str, console_port: int) -> None:
    s = settings  # type: ignore[assignment]
    mode = "SANDBOX (simulators with demo data)" if s.is_sandbox else "PRODUCTION (real systems)"  # type: ignore[attr-defined]
    lines = [
        "=" * 78,
        f" bitbylaw-motia is up — mode: {mode}",
        "=" * 78,
        f" Engine REST API     {rest}",
        f" Registered steps    {rest}/_console/functions   (.venv/bin/iii-cli flow list)",
        f" Console             http://127.0.0.1:{console_port}   (flows, traces, queues, cron, state)",
        " Logs                .venv/bin/iii-cli logs -f   (worker only: iii-cli worker logs)",
        " Queues / DLQ        .venv/bin/iii-cli queue ls | dlq ls",
        " Webhooks            POST /vmh/webhook/document/create|update|delete, /vmh/webhook/entity/link|unlink",
        "                     POST /vmh/webhook/beteiligte/..., /vmh/webhook/bankverbindungen/...",
        " Advoware proxy      GET|POST|PUT|DELETE /advoware/proxy?endpoint=...",
        " Calendar sync       POST /advoware/calendar/sync",
        f" Operators' page     {rest}/ops/   (sign in with OPS_TOKEN; also .venv/bin/bitbylaw-ops)",
    ]
    if s.is_sandbox:  # type: ignore[attr-defined]
        sim = s.simulators  # type: ignore[attr-defined]
        lines += [
            "",
            " Simulators (admin API under /_sim/: faults, request log, reset):",
            f"   EspoCRM  http://127.0.0.1:{sim.espocrm_port}/api/v1   key: sandbox-espocrm-key",
            f"   Advoware http://127.0.0.1:{sim.advoware_port}/",
            f"   xAI      http://127.0.0.1:{sim.xai_port}/v1",
            f"   Google   http://127.0.0.1:{sim.google_port}/calendar/v3",
            f" Ops token (/ops/, bitbylaw-ops): {ops_token_hint(s)}",
            "",
            " The demo data was synced once at start (documents → xAI, parties → Advoware,",
            " appointments ↔ Google). Try it — EspoCRM posts its webhooks to us, watch with",
            " `.venv/bin/iii-cli logs -f` or the console:",
            "",
            "   # link a document to the account: it joins the account's xAI collection",
            f"   curl -s -X POST http://127.0.0.1:{sim.espocrm_port}/api/v1/CDokumente/65f0c0de00d000005/accounts \\",
            "        -H 'X-Api-Key: sandbox-espocrm-key' -d '{\"id\": \"65f0c0de00a000001\"}'",
            f"   curl -s http://127.0.0.1:{sim.espocrm_port}/api/v1/CDokumente/65f0c0de00d000005 -H 'X-Api-Key: sandbox-espocrm-key'",
            "",
            "   # a new party in EspoCRM: created in Advoware, advowareId written back",
            f"   curl -s -X POST http://127.0.0.1:{sim.espocrm_port}/api/v1/CBeteiligte -H 'X-Api-Key: sandbox-espocrm-key' \\",
            "        -d '{\"name\": \"Anna Neu\", \"firstName\": \"Anna\", \"lastName\": \"Neu\"}'",
        ]
    lines.append("=" * 78 + "\n Ctrl-C stops everything.\n")
    print("\n".join(lines), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--watch", action="store_true", help="reload the worker when a file under src/ or services/ is created or removed")
    parser.add_argument("--config", default=str(ROOT / "iii-config.yaml"))
    args = parser.parse_args()
    if os.environ.get("MAKELEVEL"):  # started by make: stop with it (see the module docstring)
        tied_to(os.getppid())()
    os.chdir(ROOT)
    load_dotenv(ROOT / ".env")
    try:
        settings = load_settings()
        engine_config = load_config(args.config)
    except (ConfigError, EngineConfigError) as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return 2
    for w in settings.warnings:
        print(f"warning: {w}", file=sys.stderr)
    fatal, optional = ports_to_bind(settings, engine_config, settings.redis_url)
    found = taken(fatal)
    if found:
        print(taken_message(found + taken(optional)), file=sys.stderr)
        return EXIT_PORTS_TAKEN
    for port, held_by in taken(optional):
        print(f"warning: {taken_message([(port, held_by)]).removeprefix('error: ')} The engine runs without the {port.what}.", file=sys.stderr)
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ)
    env["APP_MODE"] = settings.mode.value
    env["PYTHONPATH"] = str(ROOT)

    def stop_all(*_: object) -> None:
        for p in reversed(procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    try:
        print("Starting bitbylaw-motia")
        ensure_redis(settings.redis_url, procs)
        if settings.is_sandbox:
            sims = spawn([sys.executable, "-m", "simulators"], env=env)
            procs.append(sims)
            wait_port("127.0.0.1", settings.simulators.google_port, 20, "simulators", sims)
            print("  simulators EspoCRM, Advoware, xAI, Google Calendar (demo data)")
        if args.watch:
            env.setdefault("III_WATCH_GLOBS", '["src/**/*.py", "services/**/*.py"]')
        engine = spawn([sys.executable, "-m", "iii_local", "run", "-c", args.config], env=env)
        procs.append(engine)
        rest_port = engine_config.rest.port if engine_config.rest else int(env.get("III_REST_PORT", "3111"))
        wait_port("127.0.0.1", rest_port, 30, "engine", engine)
        rest = f"http://127.0.0.1:{rest_port}"
        if settings.is_sandbox:
            catch_up(rest, engine)
        banner(settings, rest, engine_config.local.console_port)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = [p for p in procs if p.poll() is not None]
        print(f"a process exited ({dead[0].args}); stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping…")
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
