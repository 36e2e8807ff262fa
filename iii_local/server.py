"""Assemble and run the stand-in engine from an EngineConfig.

The ExecModule's commands inherit the engine's environment and nothing more, like the real
engine's (modules/shell/exec.rs 179-215): a worker learns the engine's address from its own
command line (`III_URL=... scripts/run_worker.py` in the project's configs).

Every listener binds to loopback unless configured otherwise (`local_engine.worker_host`,
the REST module's `host`, `local_engine.console_host`). Before anything binds, the engine
refuses to start when a listener beyond loopback lacks its secret: the worker port needs
`local_engine.worker_secret`, the console and a non-loopback REST port's `/_console` API
`local_engine.console_token`, each at least 32 bytes (`console_guard.check_exposure`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from pathlib import Path

from aiohttp import web

from iii_local.config import CRON_REDIS, STATE_REDIS, EngineConfig, QueueConfig
from iii_local.console_api import console_routes
from iii_local.console_guard import check_exposure
from iii_local.console_server import ConsoleServer
from iii_local.cron import CronModule
from iii_local.engine import Engine
from iii_local.queue import QueueModule
from iii_local.rest import RestModule
from iii_local.state import StateModule
from iii_local.store import Store, make_store
from iii_local.supervisor import ExecSupervisor
from iii_local.telemetry import TelemetryStore, format_log_line
from iii_local.worker_server import make_worker_app

log = logging.getLogger("iii_local")


class LocalEngine:
    def __init__(self, config: EngineConfig, *, run_exec: bool = True, echo_logs: bool = False) -> None:
        self.config = config
        self.run_exec = run_exec
        self.echo_logs = echo_logs
        log_file = str(config.path(config.local.log_file)) if config.local.log_file else None
        if log_file:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        self.telemetry = TelemetryStore(config.local.logs_max, config.local.traces_max, log_file)
        timeout = (config.rest.default_timeout_ms / 1000) if config.rest else 30.0
        self.engine = Engine(self.telemetry, default_timeout=timeout)
        self.stores: list[Store] = []
        self.queue: QueueModule | None = None
        self.cron: CronModule | None = None
        self.rest: RestModule | None = None
        self.state: StateModule
        self.supervisors: list[ExecSupervisor] = []
        self.runners: list[web.AppRunner] = []
        self._echo_task: asyncio.Task[None] | None = None
        self.console: ConsoleServer | None = None

    def _store(self, store_method: str, file_path: str, is_redis: bool, redis_url: str) -> Store:
        store = make_store(store_method, self.config.path(file_path), is_redis, redis_url)
        self.stores.append(store)
        return store

    async def start(self) -> None:
        cfg = self.config
        self.check_exposure()  # before anything binds
        sc = cfg.state
        state_store = self._store(sc.store_method, sc.file_path, sc.adapter == STATE_REDIS, sc.redis_url) if sc else self._store("in_memory", "", False, "")
        for s in self.stores:
            await s.open()
        self.state = StateModule(self.engine, state_store, redis_adapter=bool(sc and sc.adapter == STATE_REDIS))
        # The queue module is always on (queue.rs: enabled_by_default); unconfigured it keeps nothing.
        qc = cfg.queue or QueueConfig(store_method="in_memory")
        self.queue = QueueModule(self.engine, qc, data_path=cfg.path(qc.file_path))
        await self.queue.start()
        if cfg.cron:
            self.cron = CronModule(self.engine, redis_url=cfg.cron.redis_url if cfg.cron.adapter == CRON_REDIS else None)
            await self.cron.start()
        routes = console_routes(self)
        if cfg.rest:
            self.rest = RestModule(self.engine, cfg.rest, console_routes=routes, max_body_bytes=cfg.local.max_body_bytes,
                                   body_timeout=cfg.local.body_timeout_ms / 1000 or None)
            await self._serve(self.rest.make_app(), cfg.rest.host, cfg.rest.port)
        await self._serve(make_worker_app(self.engine, secret=cfg.local.worker_secret), cfg.host, cfg.port)
        await self._start_console()
        if self.echo_logs:
            self._echo_task = asyncio.create_task(self._echo())
        if self.run_exec:
            for ec in cfg.exec:
                sup = ExecSupervisor(ec, cwd=cfg.base_dir, log=self._sup_log)
                self.supervisors.append(sup)
                await sup.start()

    def check_exposure(self) -> None:
        """ConsoleConfigError when a listener beyond loopback lacks a strong enough secret."""
        cfg = self.config
        check_exposure(cfg.host, cfg.local.worker_secret, what="the worker port's host", setting="local_engine.worker_secret")
        if cfg.rest and cfg.local.console_token:  # without a token /_console answers only loopback clients
            check_exposure(cfg.rest.host, cfg.local.console_token, what="the REST host", setting="local_engine.console_token")
        if cfg.local.console_port > 0:
            check_exposure(cfg.local.console_host, cfg.local.console_token)

    async def _start_console(self) -> None:
        """The console page on local_engine.console_host:console_port (0 turns it off).

        Its exposure was checked by `start()` before anything bound (`check_exposure`). A taken
        port only costs the page: it is logged and the engine runs on.
        """
        lc = self.config.local
        if lc.console_port <= 0:
            return
        console = ConsoleServer(host=lc.console_host, port=lc.console_port, token=lc.console_token, routes=console_routes(self),
                                session_ttl=lc.console_session_ttl_s, cookie_secure=lc.console_cookie_secure)
        try:
            await console.start()
        except OSError as exc:
            self.telemetry.engine_log("warn", f"console not started on {lc.console_host}:{lc.console_port}: {exc}", step="console")
            return
        self.console = console
        self.telemetry.engine_log("info", f"console on {console.url}", step="console")

    def _sup_log(self, level: str, message: str) -> None:
        self.telemetry.engine_log(level, message, step="exec")

    async def _serve(self, app: web.Application, host: str, port: int) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        self.runners.append(runner)

    async def _echo(self) -> None:
        q = self.telemetry.subscribe()
        while True:
            rec = await q.get()
            if rec.level == "debug" and not os.environ.get("III_DEBUG"):
                continue
            print(format_log_line(rec), flush=True)

    async def stop(self) -> None:
        for sup in self.supervisors:
            await sup.stop()
        if self._echo_task:
            self._echo_task.cancel()
        if self.queue:
            await self.queue.stop()
        if self.cron:
            await self.cron.stop()
        if self.console:
            await self.console.stop()
        for r in self.runners:
            await r.cleanup()
        for s in self.stores:
            await s.close()


async def serve(config: EngineConfig, *, echo_logs: bool = True) -> None:
    le = LocalEngine(config, echo_logs=echo_logs)
    await le.start()
    # GC pauses stop the event loop. Everything loaded so far lives as long as the process:
    # keep it out of the cyclic GC's scans. Then collect the young generation every 10,000
    # allocations (not 700) and the whole heap only every 100 middle ones (minutes apart
    # under load, not every few seconds): a full pass over the telemetry history takes
    # tens of milliseconds. Little cyclic garbage is left to wait for it (closed channel
    # connections are freed by reference counting, see worker_server._TransportReaper).
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    rest = f"http://{config.rest.host}:{config.rest.port}" if config.rest else "(no REST module)"
    le.telemetry.engine_log("info", f"iii local engine up: REST {rest}, workers ws://{config.host}:{config.port}")
    await stop.wait()
    le.telemetry.engine_log("info", "shutting down")
    await le.stop()
