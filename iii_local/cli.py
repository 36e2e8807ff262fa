"""`python -m iii_local`: run the engine, or operate a running one (the `iii-cli` verbs).

    python -m iii_local run -c iii-config.yaml
    python -m iii_local flow list
    python -m iii_local state ls [SCOPE] | get SCOPE KEY | set SCOPE KEY JSON | delete SCOPE KEY
    python -m iii_local logs [-f] [--level L] [--trace ID] [--step NAME] [-n N]
    python -m iii_local trace ID
    python -m iii_local queue ls
    python -m iii_local dlq ls [--topic T]
    python -m iii_local cron ls | trigger FUNCTION_ID
    python -m iii_local console [--engine URL] [--host H] [--port P] [--token T]

Operator verbs talk to the engine's `/_console` API at `--engine` (default from
`III_ENGINE_URL`, else http://127.0.0.1:$III_REST_PORT or 3111).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from iii_local.config import EngineConfigError, load_config
from iii_local.telemetry import LogRecord, format_log_line


def _engine_url(args: argparse.Namespace) -> str:
    return (args.engine or os.environ.get("III_ENGINE_URL") or f"http://127.0.0.1:{os.environ.get('III_REST_PORT', '3111')}").rstrip("/")


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    url = _engine_url(args) + path
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", "X-Console-Request": "1"})
    token = os.environ.get("III_CONSOLE_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - operator tool, loopback by default
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        raise SystemExit(f"engine answered {exc.code}: {detail}") from exc
    except urllib.error.URLError as exc:
        raise SystemExit(f"cannot reach the engine at {_engine_url(args)}: {exc.reason}") from exc


def _ts(t: float | None) -> str:
    if not t:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _quote(s: str) -> str:
    return urllib.request.quote(s, safe="")


def cmd_run(args: argparse.Namespace) -> int:
    from iii_local.server import serve

    try:
        config = load_config(args.config)
    except EngineConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass
    except EngineConfigError as exc:  # e.g. a console exposed without a token
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    """Serve the console page on its own, proxying to a running engine's /_console API."""
    import signal

    from iii_local.console_server import ConsoleServer

    engine = (args.console_engine or _engine_url(args)).rstrip("/")
    token = args.token if args.token is not None else os.environ.get("III_CONSOLE_TOKEN", "")
    server = ConsoleServer(host=args.host, port=args.port, token=token, engine_url=engine)

    async def run() -> None:
        await server.start()
        print(f"iii console on {server.url} (engine {engine})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()

    try:
        asyncio.run(run())
    except EngineConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_flow(args: argparse.Namespace) -> int:
    data = _call(args, "GET", "/_console/functions")
    by_fn: dict[str, list[dict[str, Any]]] = {}
    for t in data["triggers"]:
        by_fn.setdefault(t["function_id"], []).append(t)
    flows: dict[str, list[str]] = {}
    for fn in data["functions"]:
        meta = fn.get("metadata") or {}
        triggers = by_fn.get(fn["function_id"], [])
        tmeta = (triggers[0]["config"].get("metadata") if triggers else None) or meta
        for flow in (tmeta.get("flows") or ["(no flow)"]):
            lines = flows.setdefault(flow, [])
            desc = []
            for t in triggers:
                c = t["config"]
                if t["trigger_type"] == "http":
                    desc.append(f"http {c.get('http_method')} /{c.get('api_path')}")
                elif t["trigger_type"] == "queue":
                    desc.append(f"queue {c.get('topic')}")
                elif t["trigger_type"] == "cron":
                    desc.append(f"cron {c.get('expression')}")
                else:
                    desc.append(t["trigger_type"])
            enq = tmeta.get("enqueues") or []
            arrow = f"  → {', '.join(e if isinstance(e, str) else e.get('topic', '') for e in enq)}" if enq else ""
            lines.append(f"  {fn['function_id']}\n      {'; '.join(desc) or '(no trigger)'}{arrow}")
    for flow in sorted(flows):
        print(f"{flow}:")
        for line in flows[flow]:
            print(line)
    print(f"\n{len(data['functions'])} function(s), {len(data['triggers'])} trigger(s), {len(data['workers'])} worker(s)")
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    if args.action == "ls":
        if args.scope:
            data = _call(args, "GET", f"/_console/state/{_quote(args.scope)}")
            for item in data["items"]:
                print(f"{item['key']}\t{json.dumps(item['value'], ensure_ascii=False)[:200]}")
        else:
            for g in _call(args, "GET", "/_console/state")["groups"]:
                print(g)
        return 0
    if not args.scope or not args.key:
        raise SystemExit("state get/set/delete need SCOPE and KEY")
    path = f"/_console/state/{_quote(args.scope)}/{_quote(args.key)}"
    if args.action == "get":
        print(json.dumps(_call(args, "GET", path)["value"], indent=2, ensure_ascii=False))
    elif args.action == "set":
        try:
            value = json.loads(args.value)
        except (TypeError, ValueError):
            value = args.value
        print(json.dumps(_call(args, "PUT", path, {"value": value}), ensure_ascii=False))
    elif args.action == "delete":
        print(json.dumps(_call(args, "DELETE", path), ensure_ascii=False))
    return 0


def _print_logs(recs: list[dict[str, Any]]) -> None:
    for r in recs:
        print(format_log_line(LogRecord(**{k: v for k, v in r.items() if k in LogRecord.__dataclass_fields__})), flush=True)


def cmd_logs(args: argparse.Namespace) -> int:
    """The last `n` lines (of `source` "worker" or "engine" only, when given), then new ones with `follow`."""
    params = {"limit": str(args.n)}
    source = getattr(args, "source", None)
    if source:
        params["source"] = source
    if args.level:
        params["level"] = args.level
    if args.trace:
        params["trace"] = args.trace
    if args.step:
        params["step"] = args.step
    data = _call(args, "GET", "/_console/logs?" + urllib.parse.urlencode(params))
    _print_logs(data["logs"])
    last = data["last_seq"]
    params["limit"] = "10000"  # following: every new line (the API's maximum), not only the last n
    while args.follow:
        time.sleep(0.5)
        params["after"] = str(last)
        data = _call(args, "GET", "/_console/logs?" + urllib.parse.urlencode(params))
        _print_logs(data["logs"])
        last = data["last_seq"]
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    tr = _call(args, "GET", f"/_console/traces/{_quote(args.trace_id)}")
    print(f"trace {tr['trace_id']}  outcome={tr['outcome']}  started {_ts(tr['started'])}")
    for inv in tr["invocations"]:
        dur = f"{inv['duration_ms']:.1f} ms" if inv.get("duration_ms") is not None else "running"
        err = f"  error: {inv['error']}" if inv.get("error") else ""
        print(f"  {_ts(inv['start'])}  {inv['kind']:5} {inv['function_id']}  attempt {inv['attempt']}  {inv['outcome']}  {dur}{err}")
    if tr["logs"]:
        print("logs:")
        _print_logs(tr["logs"])
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    """One line per topic: waiting, running, retrying, stranded (in `active` since a crash), dead."""
    data = _call(args, "GET", "/_console/queues")
    print(f"{'topic':32} {'depth':>6} {'inflight':>8} {'retry':>6} {'strand':>6} {'dead':>5}  subscribers")
    for q in data["queues"]:
        subs = ", ".join(f"{s['function_id']} ({s['mode']}{'' if s['concurrency'] is None else ' x' + str(s['concurrency'])})" for s in q["subscribers"])
        print(f"{q['topic']:32} {q['depth']:>6} {q['in_flight']:>8} {q['retrying']:>6} {q['stranded']:>6} {q['dead']:>5}  {subs or '(no subscriber)'}")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    """List `queue:{topic}:dlq`. There is no replay: the real engine redrives nothing."""
    path = "/_console/dlq" + (f"?topic={_quote(args.topic)}" if args.topic else "")
    for e in _call(args, "GET", path)["dead_letters"]:
        job = e["job"]
        failed = e["failed_at"] / 1000 if isinstance(e.get("failed_at"), (int, float)) else None
        print(f"{job['id']}  {e['topic']}  attempts={job['attempts_made']}/{job['max_attempts']}  failed {_ts(failed)}\n    error: {e['error']}\n    data: {json.dumps(job['data'], ensure_ascii=False)[:300]}")
    return 0


def cmd_cron(args: argparse.Namespace) -> int:
    if args.action == "ls":
        for j in _call(args, "GET", "/_console/cron")["jobs"]:
            print(f"{j['function_id']}\n    {j['expression']}  next {_ts(j['next_fire'])}  last {_ts(j['last_fire'])} ({j['last_result'] or '-'})")
        return 0
    if not args.function_id:
        raise SystemExit("cron trigger needs FUNCTION_ID")
    print(json.dumps(_call(args, "POST", "/_console/cron/trigger", {"function_id": args.function_id})))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m iii_local", description="Local stand-in for the iii engine 0.8.3")
    p.add_argument("--engine", help="engine REST URL for operator verbs (default http://127.0.0.1:3111)")
    sub = p.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("run", help="run the engine")
    run.add_argument("-c", "--config", default="iii-config.yaml")
    run.set_defaults(fn=cmd_run)
    flow = sub.add_parser("flow", help="list steps, their triggers and topics")
    flow.add_argument("action", choices=["list"])
    flow.set_defaults(fn=cmd_flow)
    st = sub.add_parser("state", help="inspect or edit state")
    st.add_argument("action", choices=["ls", "get", "set", "delete"])
    st.add_argument("scope", nargs="?")
    st.add_argument("key", nargs="?")
    st.add_argument("value", nargs="?")
    st.set_defaults(fn=cmd_state)
    lg = sub.add_parser("logs", help="show logs")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("--level")
    lg.add_argument("--trace")
    lg.add_argument("--step")
    lg.add_argument("-n", type=int, default=200)
    lg.set_defaults(fn=cmd_logs)
    tr = sub.add_parser("trace", help="show one trace")
    tr.add_argument("trace_id")
    tr.set_defaults(fn=cmd_trace)
    qu = sub.add_parser("queue", help="queue depths")
    qu.add_argument("action", choices=["ls"])
    qu.set_defaults(fn=cmd_queue)
    dl = sub.add_parser("dlq", help="list dead letters (queue:{topic}:dlq)")
    dl.add_argument("action", choices=["ls"])
    dl.add_argument("--topic")
    dl.set_defaults(fn=cmd_dlq)
    cr = sub.add_parser("cron", help="cron jobs")
    cr.add_argument("action", choices=["ls", "trigger"])
    cr.add_argument("function_id", nargs="?")
    cr.set_defaults(fn=cmd_cron)
    co = sub.add_parser("console", help="serve the console web page for a running engine")
    co.add_argument("--engine", dest="console_engine", help="engine REST URL (default as for the other verbs)")
    co.add_argument("--host", default="127.0.0.1", help="address to bind (non-loopback needs a token)")
    co.add_argument("--port", type=int, default=3113)
    co.add_argument("--token", default=None, help="console token (default $III_CONSOLE_TOKEN); also sent to the engine")
    co.set_defaults(fn=cmd_console)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args) or 0)

