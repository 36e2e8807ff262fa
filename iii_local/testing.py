"""Test helpers in the spirit of Motia's `createMotiaTester`.

`MotiaTester` runs the stand-in engine as a subprocess (`python -m iii_local run`) on
free ports with a private data dir; the engine's ExecModule starts the real
`motia run` worker over the given steps directory through the project's keep-alive
wrapper `scripts/run_worker.py`, as production does (the ExecModule itself never restarts a
worker; `keep_alive=False` runs motia directly, to show that). The exec line gives the
worker `III_URL`; the engine process gets none. Tests then talk to it like a user:
`post/get`, `enqueue(topic, data)`, `watch(topic)`, `wait_idle()`, `state_*`,
`logs(trace_id)`, `trace(id)`, plus `kill_worker()` and `restart_engine()` for fault tests.
`console()` calls the engine's `/_console` API as an operator tool does: writes carry
`Content-Type: application/json` and `X-Console-Request: 1`, and `X-Console-Reveal: 1` asks
for unmasked values. `worker_secret` (and `worker_host`) puts the worker port behind a shared
secret, which the worker gets as the user information of its `III_URL`.

`mock_context()` builds a FlowContext-like object for unit-testing a handler directly:
its logger records lines, `enqueue` records events, `state` is an in-memory store.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from iii_local.mock_context import (  # the handler-level helpers, re-exported
    MemoryState,
    MockContext,
    MockRequest,
    MockTrigger,
    RecordingLogger,
    mock_context,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies (Linux), so an interrupted test
    run leaves no engine behind (the engine then stops its worker)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class Watch:
    """Messages enqueued to a topic since the watch began."""

    tester: MotiaTester
    topic: str
    after: int
    messages: list[dict[str, Any]] = field(default_factory=list)

    async def refresh(self) -> list[dict[str, Any]]:
        data = await self.tester.console("GET", f"/_console/messages?topic={self.topic}&after={self.after}")
        for m in data["messages"]:
            self.messages.append(m)
            self.after = max(self.after, m["seq"])
        return self.messages

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            await self.refresh()
            if len(self.messages) >= count:
                return self.messages
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} message(s) on {self.topic!r}, saw {len(self.messages)}")
            await asyncio.sleep(0.05)

    @property
    def data(self) -> list[Any]:
        return [m["data"] for m in self.messages]


class MotiaTester:
    def __init__(
        self,
        steps_dir: str | Path,
        *,
        env: dict[str, str] | None = None,
        queue_defaults: dict[str, Any] | None = None,
        rest_timeout_ms: int = 30000,
        extra_modules: list[dict[str, Any]] | None = None,
        workdir: str | Path | None = None,
        keep_alive: bool = True,
        cron_adapter: dict[str, Any] | None = None,
        state_adapter: dict[str, Any] | None = None,
        queue_adapter: dict[str, Any] | None = None,
        watch: list[str] | None = None,
        worker_secret: str = "",
        worker_host: str = "127.0.0.1",
        local_engine: dict[str, Any] | None = None,
    ) -> None:
        self.steps_dir = Path(steps_dir).resolve()
        self.env = env or {}
        self.queue_defaults = {"max_attempts": 3, "backoff_ms": 200, "concurrency": 10, **(queue_defaults or {})}
        self.rest_timeout_ms = rest_timeout_ms
        self.extra_modules = extra_modules or []
        self.keep_alive = keep_alive
        self.cron_adapter = cron_adapter or {"class": "modules::cron::KvCronAdapter"}
        self.state_adapter = state_adapter
        self.queue_adapter = queue_adapter  # e.g. the Redis adapter; default: builtin with queue_defaults
        self.watch_globs = watch  # ExecModule `watch:` (relative to the workdir, the engine's cwd)
        self.worker_secret = worker_secret
        self.worker_host = worker_host
        self.local_engine = local_engine or {}
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="motia-tester-"))
        self._own_workdir = workdir is None
        self.rest_port = free_port()
        self.worker_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.rest_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.engine_log = self.workdir / "engine.out"
        self._worker_pids: list[int] = []

    # ------------------------------------------------------------ lifecycle

    def write_config(self) -> Path:
        data_dir = self.workdir / "data"
        config = {
            "port": self.worker_port,
            "modules": [
                {"class": "modules::api::RestApiModule", "config": {"port": self.rest_port, "host": "127.0.0.1", "default_timeout": self.rest_timeout_ms}},
                {"class": "modules::queue::QueueModule", "config": {"adapter": self.queue_adapter or {"class": "modules::queue::BuiltinQueueAdapter", "config": {**self.queue_defaults, "file_path": str(data_dir / "queue_store")}}}},
                {"class": "modules::state::StateModule", "config": {"adapter": self.state_adapter or {"class": "modules::state::adapters::KvStore", "config": {"store_method": "file_based", "file_path": str(data_dir / "state_store")}}}},
                {"class": "modules::cron::CronModule", "config": {"adapter": self.cron_adapter}},
                *self.extra_modules,
                {"class": "modules::shell::ExecModule", "config": {"exec": [self.worker_command()], **({} if self.watch_globs is None else {"watch": self.watch_globs})}},
            ],
            "local_engine": {"worker_host": self.worker_host, "worker_secret": self.worker_secret, **self.local_engine},
        }
        path = self.workdir / "iii-config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def worker_command(self) -> str:
        """The ExecModule line: motia via the keep-alive wrapper (or directly), `III_URL` given."""
        py = shlex.quote(sys.executable)
        motia = f"{py} -m motia.cli run --dir {shlex.quote(str(self.steps_dir))}"
        url = f"III_URL={shlex.quote(self.worker_url)}"
        if not self.keep_alive:
            return f"exec env {url} III_BRIDGE_URL={shlex.quote(self.worker_url)} {motia}"
        return f"exec env {url} {py} {shlex.quote(str(PROJECT_ROOT / 'scripts' / 'run_worker.py'))} -- {motia}"

    @property
    def worker_url(self) -> str:
        """The worker's `III_URL`: the secret, when there is one, as the URL's user information."""
        auth = f"worker:{urllib.parse.quote(self.worker_secret, safe='')}@" if self.worker_secret else ""
        return f"ws://{auth}127.0.0.1:{self.worker_port}"

    def _spawn_engine(self) -> None:
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        for name in ("III_URL", "III_BRIDGE_URL"):  # the worker's come from its exec line
            env.pop(name, None)
        env.setdefault("OTEL_LOGS_FLUSH_INTERVAL_MS", "50")
        out = open(self.engine_log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iii_local", "run", "-c", str(self.workdir / "iii-config.yaml")],
            cwd=str(self.workdir),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
        )

    async def start(self, *, wait_functions: int = 1, timeout: float = 30.0) -> MotiaTester:
        self.write_config()
        self._spawn_engine()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        try:
            await self.wait_ready(wait_functions, timeout)
        except BaseException:
            await self.stop()  # never leave an engine and worker behind a failed start
            raise
        return self

    async def wait_ready(self, functions: int = 1, timeout: float = 30.0) -> None:
        """Wait until a worker is connected and has registered at least `functions` functions, stably."""
        deadline = time.monotonic() + timeout
        last = -1
        while True:
            try:
                st = await self.console("GET", "/_console/status")
                if st["workers"] >= 1 and st["functions"] >= functions and st["functions"] == last:
                    return
                last = st["functions"]
            except (aiohttp.ClientError, AssertionError, OSError):
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}:\n{self.engine_output()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"engine/worker not ready in {timeout}s:\n{self.engine_output()[-4000:]}")
            await asyncio.sleep(0.2)

    def engine_output(self) -> str:
        try:
            return self.engine_log.read_text(errors="replace")
        except OSError:
            return ""

    def _kill_engine(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    async def stop(self) -> None:
        self._kill_engine(signal.SIGTERM)
        # The worker runs in its own process group: make sure it is gone too.
        for pid in self._worker_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def worker_pid(self) -> int:
        data = await self.console("GET", "/_console/functions")
        pids = [w.get("pid") for w in data["workers"] if w.get("pid")]
        if not pids:
            raise AssertionError("no worker connected")
        self._worker_pids.append(int(pids[0]))
        return int(pids[0])

    async def kill_worker(self, *, wait: bool = True, functions: int = 1) -> None:
        """SIGKILL the motia worker process itself (not its wrapper); the keep-alive wrapper
        restarts it (about a second later). With `keep_alive=False` nothing does: pass wait=False."""
        pid = await self.worker_pid()
        os.kill(pid, signal.SIGKILL)
        if wait:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    new = await self.worker_pid()
                    if new != pid:
                        break
                except AssertionError:
                    pass
                await asyncio.sleep(0.2)
            await self.wait_ready(functions)

    async def kill(self) -> None:
        """SIGKILL the engine's process group and the worker, and leave them dead."""
        try:
            pid: int | None = await self.worker_pid()
        except (AssertionError, aiohttp.ClientError):
            pid = None
        self._kill_engine(signal.SIGKILL)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def restart_engine(self, *, kill: bool = True, functions: int = 1) -> None:
        """Stop the engine (SIGKILL by default, worker included) and start it again on the same data."""
        try:
            pid = await self.worker_pid()
        except (AssertionError, aiohttp.ClientError):
            pid = None
        self._kill_engine(signal.SIGKILL if kill else signal.SIGTERM)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._spawn_engine()
        await self.wait_ready(functions)

    async def __aenter__(self) -> MotiaTester:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ HTTP

    async def request(self, method: str, path: str, *, json_body: Any = None, data: Any = None, headers: dict[str, str] | None = None, params: Any = None) -> Response:
        assert self.session is not None, "tester not started"
        async with self.session.request(method, self.base_url + path, json=json_body, data=data, headers=headers, params=params) as resp:
            body = await resp.read()
            return Response(resp.status, dict(resp.headers), body)

    async def post(self, path: str, json_body: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, json_body=json_body, **kw)

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def console(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"X-Console-Reveal": "1"}
        if self.local_engine.get("console_token"):
            headers["Authorization"] = f"Bearer {self.local_engine['console_token']}"
        if method not in ("GET", "HEAD"):
            headers.update({"Content-Type": "application/json", "X-Console-Request": "1"})
        resp = await self.request(method, path, json_body=body, headers=headers)
        if resp.status >= 400:
            raise AssertionError(f"console {method} {path} → {resp.status}: {resp.text}")
        return resp.json()

    # ------------------------------------------------------------ queue, state, logs

    async def enqueue(self, topic: str, data: Any, *, group_id: str | None = None) -> list[str]:
        body: dict[str, Any] = {"topic": topic, "data": data}
        if group_id:
            body["messageGroupId"] = group_id
        return (await self.console("POST", "/_console/enqueue", body))["job_ids"]

    async def watch(self, topic: str) -> Watch:
        """Start watching `topic`: messages enqueued from now on."""
        data = await self.console("GET", "/_console/messages?limit=0")
        return Watch(self, topic, int(data["last_seq"]))

    async def messages(self, trace_id: str) -> list[dict[str, Any]]:
        """Every recorded message enqueued within one trace (e.g. by one HTTP request)."""
        return (await self.console("GET", f"/_console/messages?trace={trace_id}"))["messages"]

    async def wait_idle(self, timeout: float = 30.0, settle: float = 0.2) -> None:
        """Wait until no HTTP request, queued or retrying message is left (twice in a row)."""
        deadline = time.monotonic() + timeout
        streak = 0
        while True:
            st = await self.console("GET", "/_console/status")
            streak = streak + 1 if st["idle"] else 0
            if streak >= 2:
                return
            if time.monotonic() > deadline:
                queues = await self.console("GET", "/_console/queues")
                raise TimeoutError(f"not idle after {timeout}s: {st} {queues}")
            await asyncio.sleep(settle)

    async def state_get(self, scope: str, key: str) -> Any:
        return (await self.console("GET", f"/_console/state/{scope}/{key}"))["value"]

    async def state_set(self, scope: str, key: str, value: Any) -> None:
        await self.console("PUT", f"/_console/state/{scope}/{key}", {"value": value})

    async def state_list(self, scope: str) -> dict[str, Any]:
        items = (await self.console("GET", f"/_console/state/{scope}"))["items"]
        return {i["key"]: i["value"] for i in items}

    async def logs(self, trace_id: str | None = None, *, level: str | None = None, wait_for: str | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Log records (of one trace); with `wait_for`, poll until a message containing it shows up."""
        deadline = time.monotonic() + timeout
        while True:
            q = "?limit=10000" + (f"&trace={trace_id}" if trace_id else "") + (f"&level={level}" if level else "")
            recs = (await self.console("GET", "/_console/logs" + q))["logs"]
            if wait_for is None or any(wait_for in r["message"] for r in recs) or time.monotonic() > deadline:
                return recs
            await asyncio.sleep(0.1)

    async def trace(self, trace_id: str) -> dict[str, Any]:
        return await self.console("GET", f"/_console/traces/{trace_id}")

    async def dead_letters(self, topic: str | None = None) -> list[dict[str, Any]]:
        return (await self.console("GET", "/_console/dlq" + (f"?topic={topic}" if topic else "")))["dead_letters"]

    async def trigger_cron(self, function_id: str) -> dict[str, Any]:
        return await self.console("POST", "/_console/cron/trigger", {"function_id": function_id})


__all__ = ["MemoryState", "MockContext", "MockRequest", "MockTrigger", "MotiaTester", "RecordingLogger", "Response", "Watch", "free_port", "mock_context"]
