"""`bitbylaw-ops`: the operators' command, a client of the ops API (services.ops.api) on the
engine's REST port, so it answers the same on the real engine and the stand-in, and reads what
only the worker can (the engine's state: journals, snapshots, calendar pairs).

    bitbylaw-ops status TYPE ID [--json]          the entity view (exit 1 when it needs attention)
    bitbylaw-ops search TEXT [--json]             any id or name → TYPE ID
    bitbylaw-ops resync TYPE ID [--incremental]   queue its syncs through the ledger
    bitbylaw-ops audit [--repair] [--json] [--last] [--check NAME ...]
                                                  run the drift audit now (or show the last report);
                                                  --repair queues every repairable finding; exit 0
                                                  only when complete and nothing (else) needs hands
    bitbylaw-ops repair (ID ... | --all)          repair findings of the last report
    bitbylaw-ops ledger ls [--kind K] [--dead] [--limit N] [--json]
    bitbylaw-ops ledger replay [--kind K] [ID ...]

Where: `--url`, else OPS_URL, else http://127.0.0.1:$III_REST_PORT (3111). The token:
OPS_TOKEN from the environment, else from the project's settings (.env). Exit 2 when the API
cannot be asked (not reachable, 401, 503) or refuses the input (400, 404).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import aiohttp

from services.ops.audit.model import Check
from services.platform.ledger.policies import SyncKind

DEFAULT_PORT = "3111"
TIMEOUT_SECONDS = 90.0
KINDS = tuple(k.value for k in SyncKind)
CHECKS = tuple(c.value for c in Check)


class Refused(Exception):
    """The API could not be asked or refused (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bitbylaw-ops", description="Operators' view of the sync: entities, the drift audit, the ledger.")
    p.add_argument("--url", help="the engine's REST address (default: OPS_URL or http://127.0.0.1:$III_REST_PORT)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("status", help="where an entity is in every system, and why")
    s.add_argument("type", help="document, party, bank_account, account, eviction_case, employee (or the EspoCRM type)")
    s.add_argument("id", help="EspoCRM id, or an employee's Kürzel")
    s.add_argument("--json", action="store_true")
    f = sub.add_parser("search", help="find an entity by id or name")
    f.add_argument("text")
    f.add_argument("--json", action="store_true")
    r = sub.add_parser("resync", help="queue an entity's syncs through the ledger")
    r.add_argument("type")
    r.add_argument("id")
    r.add_argument("--incremental", action="store_true", help="employees: only what changed (default: the whole window)")
    r.add_argument("--json", action="store_true")
    a = sub.add_parser("audit", help="run the drift audit (read-only) and show its report")
    a.add_argument("--repair", action="store_true", help="then queue every repairable finding through the ledger")
    a.add_argument("--last", action="store_true", help="show the last report instead of running one")
    a.add_argument("--check", action="append", choices=CHECKS, help="only this check (repeatable)")
    a.add_argument("--json", action="store_true")
    rp = sub.add_parser("repair", help="repair findings of the last report")
    rp.add_argument("ids", nargs="*")
    rp.add_argument("--all", action="store_true")
    rp.add_argument("--json", action="store_true")
    led = sub.add_parser("ledger", help="the sync ledger")
    lsub = led.add_subparsers(dest="ledger_command", required=True)
    ls = lsub.add_parser("ls", help="live (pending, retrying) or dead marks")
    ls.add_argument("--kind", choices=KINDS)
    ls.add_argument("--dead", action="store_true")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true")
    rep = lsub.add_parser("replay", help="dead (or the named) marks back to pending, enqueued now")
    rep.add_argument("--kind", choices=KINDS)
    rep.add_argument("ids", nargs="*")
    return p


def base_url(given: str | None) -> str:
    return (given or os.environ.get("OPS_URL") or f"http://127.0.0.1:{os.environ.get('III_REST_PORT') or DEFAULT_PORT}").rstrip("/")


def token() -> str:
    value = (os.environ.get("OPS_TOKEN") or "").strip()
    if value:
        return value
    try:
        from services.platform.settings import load_settings

        secret = load_settings().ops_token
    except Exception as exc:  # noqa: BLE001 - any trouble reading the settings means: say what to set
        raise Refused(f"OPS_TOKEN is not set and the settings could not be read ({str(exc).splitlines()[0]})") from None
    if secret is None:
        raise Refused("OPS_TOKEN is not set (the operators' API is off without it)")
    return secret.get_secret_value()


async def call(url: str, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token()}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as session:
            async with session.request(method, url + path, json=body, params=params, headers=headers) as resp:
                text = await resp.text()
                try:
                    data = json.loads(text) if text else None
                except ValueError:
                    data = {"error": text[:300]}
                if resp.status >= 400:
                    reason = data.get("error") if isinstance(data, dict) else text[:300]
                    raise Refused(f"{method} {path}: {resp.status} {reason or ''}".strip())
                return resp.status, data
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Refused(f"cannot reach the ops API at {url}: {exc or type(exc).__name__} (is the engine running? --url/OPS_URL)") from None


def _when(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return "-"


def render_view(view: dict[str, Any]) -> str:
    """The entity view in words (what `status` prints)."""
    lines = [view.get("summary") or "", f"state: {view.get('state')}   ({view.get('calls')} API call(s))"]
    for p in view.get("problems") or []:
        lines.append(f"  ! {p}")
    for n in view.get("notes") or []:
        lines.append(f"  - {n}")
    if view.get("espocrm"):
        lines.append("EspoCRM:")
        lines += [f"  {k}: {v}" for k, v in view["espocrm"].items() if v not in (None, "", [])]
    parts = view.get("counterparts") or {}
    rows = parts.get("fields")
    if rows:
        lines.append("synced fields (EspoCRM | Advoware | last sync):")
        lines += [f"  {'=' if r['equal'] else '≠'} {r['field']}: {r['espocrm']!r} | {r['advoware']!r} | {r['snapshot']!r}" for r in rows]
    for name, value in parts.items():
        if name != "fields" and value not in (None, [], {}):
            lines.append(f"{name}: {json.dumps(value, ensure_ascii=False, default=str)[:600]}")
    for m in view.get("ledger") or []:
        lines.append(f"ledger: {m['kind']} {m['entity_id']} {m['state']} attempts={m['attempts']} "
                     f"{'in flight ' if m.get('in_flight') else ''}{m.get('last_error') or ''}".rstrip())
    guard = view.get("deletion_guard") or {}
    for e in guard.get("held") or []:
        lines.append(f"held delete: {e.get('key')}: {e.get('reason')} ({e.get('why')})")
    for t in guard.get("tombstones") or []:
        lines.append(f"tombstone {t.get('id')} ({_when(t.get('at'))}): {t.get('key')}: {t.get('reason')}")
    for a in view.get("activity") or []:
        lines.append(f"{_when(a.get('at'))} {a.get('level', ''):<5} {a.get('message')}  [trace {a.get('trace_id') or '-'}]")
    for system, error in (view.get("errors") or {}).items():
        lines.append(f"could not read {system}: {error}")
    return "\n".join(lines)


def _repairs_text(body: dict[str, Any]) -> str:
    lines = [f"repairs of audit {body.get('report_id')}: {body.get('queued')} queued, {body.get('skipped')} skipped, "
             f"{body.get('failed')} failed, {body.get('unknown')} unknown"]
    lines += [f"  {o['finding_id']} {o['status']}: {o['detail']}" for o in body.get("outcomes") or []]
    return "\n".join(lines)


def _dump(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


async def run(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    args = _parser().parse_args(list(argv))
    url = base_url(args.url)
    if args.command == "status":
        _, view = await call(url, "GET", f"/ops/entities/{args.type}/{args.id}")
        _dump(view, out) if args.json else out.write(render_view(view) + "\n")
        return 0 if view.get("state") in ("in_sync", "syncing") else 1
    if args.command == "search":
        _, found = await call(url, "GET", "/ops/search", params={"q": args.text})
        if args.json:
            _dump(found, out)
        else:
            for r in found.get("results") or []:
                out.write(f"{r['entity']['type']} {r['entity']['id']}  {r.get('name') or ''}  (matched {r['matched']})\n")
            for t, e in (found.get("errors") or {}).items():
                out.write(f"could not search {t}: {e}\n")
        return 0 if found.get("results") else 1
    if args.command == "resync":
        _, body = await call(url, "POST", f"/ops/entities/{args.type}/{args.id}/resync", body={"full": not args.incremental})
        if args.json:
            _dump(body, out)
        else:
            for p in body.get("prepared") or []:
                out.write(f"corrected first: {p}\n")
            for m in body.get("queued") or []:
                out.write(f"queued {m['kind']} {m['entity_id']} (seq {m['seq']}, {m['outcome']})\n")
        return 0
    if args.command == "audit":
        if args.last:
            _, overview = await call(url, "GET", "/ops/audit")
            report = overview.get("report")
            if report is None:
                raise Refused("no audit has run yet: run `bitbylaw-ops audit`")
        else:
            _, report = await call(url, "POST", "/ops/audit/run", body={"repair": args.repair, **({"checks": args.check} if args.check else {})})
        if args.json:
            _dump(report, out)
        else:
            out.write(report.get("text", "") + "\n")
            if report.get("repairs"):
                out.write(_repairs_text(report["repairs"]) + "\n")
        repairs = report.get("repairs")
        if not report.get("complete"):
            return 1
        if repairs is not None:
            return 1 if repairs.get("skipped") or repairs.get("failed") else 0
        return 1 if report.get("findings_total", len(report.get("findings") or [])) else 0
    if args.command == "repair":
        if bool(args.ids) == bool(args.all):
            raise Refused("name finding ids or --all")
        _, body = await call(url, "POST", "/ops/audit/repair", body={"all": True} if args.all else {"ids": args.ids})
        _dump(body, out) if args.json else out.write(_repairs_text(body) + "\n")
        return 1 if body.get("failed") or body.get("unknown") else 0
    if args.ledger_command == "ls":
        params = {"limit": str(args.limit), **({"kind": args.kind} if args.kind else {}), **({"dead": "1"} if args.dead else {})}
        _, view = await call(url, "GET", "/ops/ledger", params=params)
        if args.json:
            _dump(view, out)
        else:
            for name, counts in (view.get("stats") or {}).items():
                out.write(f"{name:<18} " + "  ".join(f"{k}={v}" for k, v in counts.items()) + "\n")
            for m in view.get("marks") or []:
                when = _when(m.get("died_at") if m["state"] == "dead" else m.get("due_at"))
                out.write(f"{m['kind']:<18} {m['entity_id']:<32} {m['state']:<9} attempts={m['attempts']:<2} {when}  "
                          f"{(m.get('last_error') or '')[:100]}\n")
            out.write(f"{len(view.get('marks') or [])} {view.get('list')} mark(s)\n")
        return 0
    _, body = await call(url, "POST", "/ops/ledger/replay", body={**({"kind": args.kind} if args.kind else {}), **({"ids": args.ids} if args.ids else {})})
    for m in body.get("marks") or []:
        out.write(f"replayed {m['kind']} {m['entity_id']}\n")
    out.write(f"{body.get('replayed')} mark(s) back to pending, {body.get('enqueued')} enqueued now\n")
    return 0


def main() -> None:
    try:
        code = asyncio.run(run(sys.argv[1:]))
    except Refused as exc:
        sys.stderr.write(f"bitbylaw-ops: {exc}\n")
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
