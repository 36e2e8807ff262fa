"""`iii-cli state`: the guide's one-argument keys (`state get document:sync:status`).

State lives under a scope and a key (`ctx.state.set(scope, key, value)`), and both may contain
`:` (the compat steps keep `compat.fanout` / `A:1`). A one-argument KEY is resolved so:

1. **Exact**: every split of KEY at a `:` into SCOPE and KEY that names an existing entry
   (`compat.fanout:A:1` → scope `compat.fanout`, key `A:1`). An argument that is a scope's
   whole name lists that scope.
2. **Search** (only `get`): otherwise KEY's words (split at `:`, `_`, `.`, `-`, `/`, blanks)
   must all occur, case-insensitive, in `scope:key`; the guide's `document:sync:status` finds
   `document_sync_status:<id>`. One match prints its value, several list `scope:key  value`.
3. `set` with no existing entry splits at the first `:` (scope `test`, key `key` for `test:key`);
   `delete` never searches: it needs an exact entry.

Two arguments are always SCOPE and KEY, as in `python -m iii_local state get SCOPE KEY`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from iii_local.cli import _call, _quote

Entries = Mapping[str, Mapping[str, Any]]
"""scope → key → value."""

_WORDS = re.compile(r"[:_./\-\s]+")


def exact_matches(arg: str, entries: Entries) -> list[tuple[str, str]]:
    """(scope, key) for every split of `arg` at a `:` that names an existing entry."""
    found = []
    for i, ch in enumerate(arg):
        if ch == ":":
            scope, key = arg[:i], arg[i + 1:]
            if key in entries.get(scope, {}):
                found.append((scope, key))
    return found


def search(arg: str, entries: Entries) -> list[tuple[str, str]]:
    """(scope, key) whose `scope:key` contains every word of `arg` (case-insensitive)."""
    words = [w for w in _WORDS.split(arg.lower()) if w]
    return [
        (scope, key)
        for scope in sorted(entries)
        for key in sorted(entries[scope])
        if words and all(w in f"{scope}:{key}".lower() for w in words)
    ]


def split_new(arg: str) -> tuple[str, str]:
    """A `set` of an entry that does not exist yet: scope before the first `:`, key after it."""
    scope, sep, key = arg.partition(":")
    if not sep or not scope or not key:
        raise SystemExit(f"state set: {arg!r} is not SCOPE:KEY (or give SCOPE and KEY as two arguments)")
    return scope, key


def _preview(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:200]


class StateCommand:
    """The `state` verb over the engine's `/_console/state` API (`call` = `iii_local.cli._call`)."""

    def __init__(self, args: argparse.Namespace, call: Callable[..., Any] = _call) -> None:
        self.args = args
        self.call = call

    def scopes(self) -> list[str]:
        return list(self.call(self.args, "GET", "/_console/state")["groups"])

    def items(self, scope: str) -> dict[str, Any]:
        data = self.call(self.args, "GET", f"/_console/state/{_quote(scope)}")
        return {item["key"]: item["value"] for item in data["items"]}

    def entries(self) -> dict[str, dict[str, Any]]:
        return {scope: self.items(scope) for scope in self.scopes()}

    def path(self, scope: str, key: str) -> str:
        return f"/_console/state/{_quote(scope)}/{_quote(key)}"

    def run(self) -> int:
        action, names = self.args.action, [n for n in (self.args.scope, self.args.key) if n is not None]
        if action == "ls":
            return self.ls(names[0] if names else None)
        if not names:
            raise SystemExit(f"state {action} needs KEY (scope:key) or SCOPE KEY")
        if action == "get":
            return self.get(names)
        if action == "set":
            return self.set(names)
        return self.delete(names)

    def ls(self, scope: str | None) -> int:
        """Every `scope:key` (the guide's "list all state keys"), or one scope's keys and values."""
        if scope is not None:
            for key, value in self.items(scope).items():
                print(f"{key}\t{_preview(value)}")
            return 0
        for name, items in self.entries().items():
            for key in items:
                print(f"{name}:{key}")
        return 0

    def get(self, names: list[str]) -> int:
        if len(names) == 2:
            print(json.dumps(self.call(self.args, "GET", self.path(*names))["value"], indent=2, ensure_ascii=False))
            return 0
        entries = self.entries()
        arg = names[0]
        hits = exact_matches(arg, entries)
        if not hits and arg in entries:
            return self.ls(arg)
        hits = hits or search(arg, entries)
        if not hits:
            print(f"no state entry matches {arg!r} (iii-cli state ls lists them)", file=sys.stderr)
            return 1
        if len(hits) == 1:
            scope, key = hits[0]
            print(f"# {scope}:{key}", file=sys.stderr)
            print(json.dumps(entries[scope][key], indent=2, ensure_ascii=False))
            return 0
        for scope, key in hits:
            print(f"{scope}:{key}\t{_preview(entries[scope][key])}")
        return 0

    def set(self, names: list[str]) -> int:
        if self.args.value is None and len(names) == 2:  # `set KEY VALUE`: the value came as the second name
            names, self.args.value = names[:1], names[1]
        if self.args.value is None:
            raise SystemExit("state set needs a VALUE (JSON, or text)")
        if len(names) == 2:
            scope, key = names
        else:
            hits = exact_matches(names[0], self.entries())
            scope, key = hits[0] if len(hits) == 1 else split_new(names[0])
        try:
            value = json.loads(self.args.value)
        except ValueError:
            value = self.args.value
        print(json.dumps(self.call(self.args, "PUT", self.path(scope, key), {"value": value}), ensure_ascii=False))
        return 0

    def delete(self, names: list[str]) -> int:
        if len(names) == 2:
            scope, key = names
        else:
            hits = exact_matches(names[0], self.entries())
            if len(hits) != 1:
                what = "no entry" if not hits else f"{len(hits)} entries"
                raise SystemExit(f"state delete: {names[0]!r} names {what}; give SCOPE and KEY")
            scope, key = hits[0]
        print(json.dumps(self.call(self.args, "DELETE", self.path(scope, key)), ensure_ascii=False))
        return 0
