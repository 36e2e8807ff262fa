"""`iii-cli`: the developer guide's command line, driving the local stand-in engine.

Installed into the project's venv as `.venv/bin/iii-cli` (pyproject.toml `[project.scripts]`,
`make venv`). The guide's verbs and flags, as written there:

    iii-cli dev [--host H] [--port P] [--engine-host H] [--engine-port P] [-c FILE]
    iii-cli start [-c FILE]
    iii-cli console [--host H] [-p|--port P] [--engine-host H] [--engine-port P]
    iii-cli logs [-f] [--level L] [--trace ID] [-n N]
    iii-cli trace ID
    iii-cli state ls [SCOPE] | get KEY | get SCOPE KEY | set KEY VALUE | delete KEY
    iii-cli stream ls
    iii-cli flow list
    iii-cli worker logs [-f] [--level L] [-n N] | worker status
    iii-cli queue ls | dlq ls [--topic T] | cron ls | cron trigger FUNCTION_ID   (the stand-in's own)

- `dev` is `make dev`: `scripts/run_service.py --watch` (Redis, the simulators in sandbox
  mode, the engine with the watch globs on src/ and services/, the worker, the console);
  `--host/--port` place the console, `--engine-host/--engine-port` the engine's REST API.
- `start` runs the engine alone, as `iii -c FILE` does (the real `iii-cli start` runs the `iii`
  binary): `python -m iii_local run -c FILE`, default `iii-config.yaml`.
- `console` serves the console page for a running engine (the real one runs `iii-console`,
  whose `--ws-port`, `--bridge-port`, `--no-otel`, `--otel-service-name`, `--enable-flow` are
  accepted and not needed here).
- The other verbs read the engine's `/_console` API at `--engine-host`/`--engine-port`
  (default `$III_ENGINE_URL`, else 127.0.0.1:`$III_REST_PORT` or 3111); `III_CONSOLE_TOKEN` is
  sent as the bearer token. `worker logs` keeps the lines the worker sent (ctx.logger), not
  the engine's own. `state get KEY` takes the guide's one-argument form (see state_keys).

The real iii-cli 0.8.3 (iii-hq/iii cli/src/cli.rs) only dispatches `start` (the `iii` engine),
`console` (`iii-console`), `create`, `sdk motia`, `update` and `list`: the guide's dev, logs,
trace, state, stream, flow and worker verbs exist only here, against the stand-in.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iii_local import cli
from iii_local.config import EngineConfigError, load_config
from iii_local.iii_cli.ports import EXIT_PORTS_TAKEN, engine_ports, taken, taken_message
from iii_local.iii_cli.state_keys import StateCommand

ROOT = Path(__file__).resolve().parents[2]
"""The project (the venv's editable install points here)."""
VERSION = "iii-cli (bitbylaw-motia: the stand-in for iii engine 0.8.3, python -m iii_local)"


def _engine(args: argparse.Namespace) -> argparse.Namespace:
    """`args` with `engine` (the URL iii_local.cli talks to) from --engine-host/--engine-port."""
    if args.engine_host or args.engine_port:
        default = cli._engine_url(argparse.Namespace(engine=None)).split("//", 1)[1]
        host, _, port = default.rpartition(":")
        args.engine = f"http://{args.engine_host or host}:{args.engine_port or port}"
    else:
        args.engine = None
    return args


def cmd_dev(args: argparse.Namespace) -> int:
    """Become `scripts/run_service.py --watch` with the flags given as the engine's variables."""
    env = dict(os.environ)
    for flag, variable in (("host", "III_CONSOLE_HOST"), ("port", "III_CONSOLE_PORT"), ("engine_host", "III_REST_HOST"), ("engine_port", "III_REST_PORT")):
        value = getattr(args, flag)
        if value is not None:
            env[variable] = str(value)
    argv = [sys.executable, str(ROOT / "scripts" / "run_service.py"), "--watch"]
    if args.config:
        argv += ["--config", args.config]
    os.chdir(ROOT)
    os.execve(sys.executable, argv, env)
    return 0  # not reached


def cmd_start(args: argparse.Namespace) -> int:
    """The engine alone (`iii -c FILE`); taken ports are named in one line, not a traceback."""
    try:
        config = load_config(args.config)
    except EngineConfigError:
        return cli.cmd_run(argparse.Namespace(config=args.config))  # which names the problem, exit 2
    found = taken(engine_ports(config))
    if found:
        print(taken_message(found, who="another engine"), file=sys.stderr)
        return EXIT_PORTS_TAKEN
    return cli.cmd_run(argparse.Namespace(config=args.config))


def cmd_console(args: argparse.Namespace) -> int:
    engine = f"http://{args.engine_host or '127.0.0.1'}:{args.engine_port or 3111}"
    return cli.cmd_console(argparse.Namespace(console_engine=engine, engine=None, host=args.host, port=args.port, token=args.token))


def cmd_logs(args: argparse.Namespace) -> int:
    ns = argparse.Namespace(engine=args.engine, follow=args.follow, level=args.level, trace=getattr(args, "trace", None),
                            step=getattr(args, "step", None), n=args.n, source=getattr(args, "source", None))
    try:
        return cli.cmd_logs(ns)
    except KeyboardInterrupt:
        return 130


def _since(t: float | None) -> str:
    if not t:
        return "-"
    return f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M:%S} UTC ({time.time() - t:.0f} s ago)"


def _workers(args: argparse.Namespace) -> list[dict[str, Any]]:
    return list(cli._call(args, "GET", "/_console/functions")["workers"])


def _print_workers(workers: list[dict[str, Any]]) -> None:
    for w in workers:
        print(f"  worker {w['id']}  pid {w.get('pid', '?')}  {w.get('runtime', '?')} {w.get('version', '')}".rstrip()
              + f"  from {w.get('remote', '?')}  connected {_since(w.get('connected_at'))}"
              + f"  functions {len(w.get('functions', []))}  pending invocations {w.get('pending_invocations', 0)}")


def cmd_worker(args: argparse.Namespace) -> int:
    if args.action == "logs":
        args.source = "worker"
        return cmd_logs(args)
    status = cli._call(args, "GET", "/_console/status")
    workers = _workers(args)
    print(f"engine up {status['uptime_s']:.0f} s, {status['functions']} function(s), "
          f"worker pipeline restarts {status['worker_restarts']}, idle {status['idle']}")
    if not workers:
        print("no worker connected (the engine's ExecModule starts it through scripts/run_worker.py; see `iii-cli logs --level warn`)")
        return 1
    _print_workers(workers)
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    """No streams here: say so, and show what carries the events instead (queues, websockets)."""
    print("streams: none (the config has no modules::stream::StreamModule; the project keeps no streams)")
    print("queues (the topics the steps enqueue to):")
    cli.cmd_queue(args)
    print("worker connections (websocket):")
    _print_workers(_workers(args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iii-cli", description="The developer guide's iii-cli, driving the local stand-in engine (iii_local).")
    p.add_argument("--version", action="version", version=f"{VERSION} at {Path(__file__).parent}")
    p.add_argument("--no-update-check", action="store_true", help=argparse.SUPPRESS)  # the real iii-cli's global flag
    engine = argparse.ArgumentParser(add_help=False)
    engine.add_argument("--engine-host", help="the engine's REST host (default 127.0.0.1, or $III_ENGINE_URL)")
    engine.add_argument("--engine-port", type=int, help="the engine's REST port (default $III_REST_PORT or 3111)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    dev = sub.add_parser("dev", help="make dev: Redis, simulators (sandbox), engine with watch globs, worker, console")
    dev.add_argument("--host", help="console address (III_CONSOLE_HOST)")
    dev.add_argument("-p", "--port", type=int, help="console port (III_CONSOLE_PORT, default 3113)")
    dev.add_argument("--engine-host", help="engine REST address (III_REST_HOST)")
    dev.add_argument("--engine-port", type=int, help="engine REST port (III_REST_PORT, default 3111)")
    dev.add_argument("-c", "--config", help="engine config (default iii-config.yaml)")
    dev.set_defaults(fn=cmd_dev, operator=False)

    start = sub.add_parser("start", help="the engine alone, like `iii -c FILE`")
    start.add_argument("-c", "--config", default="iii-config.yaml")
    start.set_defaults(fn=cmd_start, operator=False)

    co = sub.add_parser("console", help="the console page for a running engine")
    co.add_argument("--host", default="127.0.0.1", help="address to bind (non-loopback needs a token)")
    co.add_argument("-p", "--port", type=int, default=3113)
    co.add_argument("--engine-host", default="127.0.0.1")
    co.add_argument("--engine-port", type=int, default=3111)
    co.add_argument("--token", default=None, help="console token (default $III_CONSOLE_TOKEN)")
    for ignored in ("--ws-port", "--bridge-port", "--otel-service-name"):
        co.add_argument(ignored, help=argparse.SUPPRESS)
    for ignored in ("--no-otel", "--enable-flow"):
        co.add_argument(ignored, action="store_true", help=argparse.SUPPRESS)
    co.set_defaults(fn=cmd_console, operator=False)

    lg = sub.add_parser("logs", parents=[engine], help="logs of steps and engine")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("--level", help="debug | info | warn | error (that level and above)")
    lg.add_argument("--trace", help="only this trace id")
    lg.add_argument("--step", help="only this step")
    lg.add_argument("-n", type=int, default=200, help="the last N lines (default 200)")
    lg.set_defaults(fn=cmd_logs)

    tr = sub.add_parser("trace", parents=[engine], help="one trace: handlers, durations, outcomes, its logs")
    tr.add_argument("trace_id")
    tr.set_defaults(fn=lambda a: cli.cmd_trace(a))

    st = sub.add_parser("state", parents=[engine], help="ls [SCOPE] | get KEY | get SCOPE KEY | set KEY VALUE | delete KEY")
    st.add_argument("action", choices=["ls", "get", "set", "delete"])
    st.add_argument("scope", nargs="?", metavar="KEY|SCOPE")
    st.add_argument("key", nargs="?", metavar="KEY|VALUE")
    st.add_argument("value", nargs="?", metavar="VALUE")
    st.set_defaults(fn=lambda a: StateCommand(a).run())

    sm = sub.add_parser("stream", parents=[engine], help="streams (none here), queues and worker connections")
    sm.add_argument("action", choices=["ls"])
    sm.set_defaults(fn=cmd_stream)

    fl = sub.add_parser("flow", parents=[engine], help="steps by flow, their triggers and topics")
    fl.add_argument("action", choices=["list"])
    fl.set_defaults(fn=lambda a: cli.cmd_flow(a))

    wk = sub.add_parser("worker", parents=[engine], help="logs: the worker's log lines | status: connected workers")
    wk.add_argument("action", choices=["logs", "status"])
    wk.add_argument("-f", "--follow", action="store_true")
    wk.add_argument("--level")
    wk.add_argument("-n", type=int, default=200)
    wk.set_defaults(fn=cmd_worker)

    qu = sub.add_parser("queue", parents=[engine], help="depth, in-flight, retrying, stranded, dead per topic")
    qu.add_argument("action", choices=["ls"])
    qu.set_defaults(fn=lambda a: cli.cmd_queue(a))
    dl = sub.add_parser("dlq", parents=[engine], help="the engine's dead letters (listed only)")
    dl.add_argument("action", choices=["ls"])
    dl.add_argument("--topic")
    dl.set_defaults(fn=lambda a: cli.cmd_dlq(a))
    cr = sub.add_parser("cron", parents=[engine], help="cron ls | cron trigger FUNCTION_ID")
    cr.add_argument("action", choices=["ls", "trigger"])
    cr.add_argument("function_id", nargs="?")
    cr.set_defaults(fn=lambda a: cli.cmd_cron(a))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "operator", True):
        _engine(args)
    return int(args.fn(args) or 0)
