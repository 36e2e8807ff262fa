"""The Advoware contract check: does the firm's Swagger/OpenAPI document (a JSON file) have
every path, method, query parameter and field our client uses (`paths.ENDPOINTS`, the one
table)? Run it before production is switched on:

    python -m services.clients.advoware.contract swagger.json [--json] [--strict]

Rules:
- Swagger 2.0 (`basePath` + `paths`, `definitions`, body parameters) and OpenAPI 3
  (`servers[0].url`'s path + `paths`, `components.schemas`, `requestBody`) are read; `$ref`,
  `allOf` and arrays (`items`) are followed. Path parameters match whatever their name.
- MISSING (exit 1): a path, a method on it, a query parameter, a request field (what the
  client sends) or a response field (what it reads) the document lacks. Close names in the
  document (case-insensitive, difflib) are given as hints.
- CASE: the document names it with other letter case. ASP.NET routes, query parameters and
  JSON bodies ignore case and the client maps answers case-insensitively, so this works;
  `--strict` counts it as missing all the same.
- NOTE: nothing to compare (an operation without a JSON schema): not counted.
Exit 2 when the file is no Swagger/OpenAPI JSON document.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from services.clients.advoware import paths as P

_PARAM = re.compile(r"\{[^}]*\}")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class Severity(StrEnum):
    MISSING = "MISSING"
    CASE = "CASE"
    NOTE = "NOTE"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    endpoint: str
    """`METHOD path` of ours."""
    what: str
    hint: str = ""

    def line(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.severity.value:<8} {self.endpoint}: {self.what}{hint}"


class NotADocument(ValueError):
    """The file is no Swagger 2.0 / OpenAPI 3 JSON document."""


def _norm(path: str) -> str:
    """`/api/v1/x/{id}/` → `api/v1/x/{}` (parameters unnamed)."""
    return _PARAM.sub("{}", path.strip("/"))


def _near(name: str, candidates: Iterable[str] | Mapping[str, str]) -> str:
    """Close names among `candidates` (case-insensitive; a mapping shows its values), as a hint."""
    shown = candidates if isinstance(candidates, Mapping) else {c: c for c in candidates}
    by_lower: dict[str, str] = {}
    for c, display in shown.items():
        by_lower.setdefault(c.lower(), display)
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.7)
    return "near: " + ", ".join(by_lower[c] for c in close) if close else ""


class Document:
    """A Swagger 2.0 or OpenAPI 3 document: operations by normalised full path and schemas."""

    def __init__(self, doc: Any) -> None:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("paths"), Mapping):
            raise NotADocument("no `paths` object: not a Swagger/OpenAPI document")
        self.doc = doc
        self.v3 = str(doc.get("openapi", "")).startswith("3")
        if not self.v3 and str(doc.get("swagger", "")) != "2.0":
            raise NotADocument("neither `swagger: 2.0` nor `openapi: 3.x`")
        base = self._base_path()
        self.paths: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for key, item in doc["paths"].items():
            if isinstance(item, Mapping):
                full = f"{base}/{str(key).strip('/')}".strip("/")
                self.paths[_norm(full)] = (full, item)

    def _base_path(self) -> str:
        if self.v3:
            servers = self.doc.get("servers") or [{}]
            url = str(servers[0].get("url") or "") if isinstance(servers[0], Mapping) else ""
            return urlsplit(url).path.strip("/")
        return str(self.doc.get("basePath") or "").strip("/")

    def shown_paths(self) -> dict[str, str]:
        """Normalised path → the path as the document spells it."""
        return {k: f"/{full}" for k, (full, _) in self.paths.items()}

    def find(self, template: str) -> tuple[str, Mapping[str, Any]] | None:
        return self.paths.get(_norm(template))

    def find_case_insensitive(self, template: str) -> tuple[str, Mapping[str, Any]] | None:
        wanted = _norm(template).lower()
        return next((v for k, v in self.paths.items() if k.lower() == wanted), None)

    def _resolve(self, schema: Any, depth: int = 0) -> Mapping[str, Any]:
        if not isinstance(schema, Mapping) or depth > 20:
            return {}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = self.doc
            for part in ref[2:].split("/"):
                target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, Mapping) else None
            return self._resolve(target, depth + 1)
        if schema.get("type") == "array" or "items" in schema:
            return self._resolve(schema.get("items"), depth + 1)
        return schema

    def fields(self, schema: Any) -> set[str] | None:
        """The property names of a (referenced, array-wrapped, allOf-combined) object schema,
        or None when there is no schema to compare with."""
        resolved = self._resolve(schema)
        if not resolved:
            return None
        names: set[str] = set(resolved.get("properties") or {})
        for part in resolved.get("allOf") or []:
            names |= self.fields(part) or set()
        return names

    def _json_schema(self, content: Any) -> Any:
        if not isinstance(content, Mapping) or not content:
            return None
        media = next((m for m in content if "json" in str(m)), next(iter(content)))
        body = content.get(media)
        return body.get("schema") if isinstance(body, Mapping) else None

    def parameters(self, item: Mapping[str, Any], op: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        params = [*(item.get("parameters") or []), *(op.get("parameters") or [])]
        return [self._resolve(p) if "$ref" in p else p for p in params if isinstance(p, Mapping)]

    def request_schema(self, item: Mapping[str, Any], op: Mapping[str, Any]) -> Any:
        if self.v3:
            body = self._resolve(op.get("requestBody"))
            return self._json_schema(body.get("content"))
        return next((p.get("schema") for p in self.parameters(item, op) if p.get("in") == "body"), None)

    def response_schema(self, op: Mapping[str, Any]) -> Any:
        responses = op.get("responses") or {}
        for code in sorted(c for c in responses if str(c).startswith("2")):
            answer = self._resolve(responses[code])
            schema = self._json_schema(answer.get("content")) if self.v3 else answer.get("schema")
            if schema is not None:
                return schema
        return None


def _compare(ours: Iterable[str], theirs: set[str], endpoint: str, kind: str) -> list[Finding]:
    out: list[Finding] = []
    lower = {t.lower(): t for t in theirs}
    for name in ours:
        if name in theirs:
            continue
        if name.lower() in lower:
            out.append(Finding(Severity.CASE, endpoint, f"{kind} {name} is named {lower[name.lower()]}"))
        else:
            out.append(Finding(Severity.MISSING, endpoint, f"{kind} {name} not in the document", _near(name, theirs)))
    return out


def _fields_of(fields: type[StrEnum] | None, read_only: frozenset[Any] = frozenset()) -> list[str]:
    return [f.value for f in fields or () if f not in read_only]


def check_endpoint(document: Document, ep: P.Endpoint) -> list[Finding]:
    """Everything the document lacks (or names differently) for one of our calls."""
    name = f"{ep.method} {ep.path}"
    hit = document.find(ep.path)
    findings: list[Finding] = []
    if hit is None:
        hit = document.find_case_insensitive(ep.path)
        if hit is None:
            return [Finding(Severity.MISSING, name, "path not in the document", _near(_norm(ep.path), document.shown_paths()))]
        findings.append(Finding(Severity.CASE, name, f"path is named /{hit[0]}"))
    _, item = hit
    op = item.get(ep.method.lower())
    if not isinstance(op, Mapping):
        methods = sorted(m.upper() for m in item if m in _HTTP_METHODS)
        return [*findings, Finding(Severity.MISSING, name, f"method {ep.method} not on this path", f"it has {', '.join(methods) or 'none'}")]
    params = document.parameters(item, op)
    query = {str(p.get("name")) for p in params if p.get("in") == "query"}
    findings += _compare(ep.query, query, name, "query parameter")
    for kind, wanted, schema in (
        ("request field", _fields_of(ep.request, ep.read_only), document.request_schema(item, op) if ep.request else None),
        ("response field", _fields_of(ep.response), document.response_schema(op) if ep.response else None),
    ):
        if not wanted:
            continue
        theirs = document.fields(schema)
        if theirs is None:
            findings.append(Finding(Severity.NOTE, name, f"no JSON schema for the {kind.split()[0]}: its fields are not checked"))
        else:
            findings += _compare(wanted, theirs, name, kind)
    return findings


def check(doc: Any, endpoints: Sequence[P.Endpoint] = P.ENDPOINTS) -> list[Finding]:
    """Every finding for our endpoints against a parsed Swagger/OpenAPI document."""
    document = Document(doc)
    return [f for ep in endpoints for f in check_endpoint(document, ep)]


def failed(findings: Iterable[Finding], *, strict: bool = False) -> bool:
    counted = {Severity.MISSING, Severity.CASE} if strict else {Severity.MISSING}
    return any(f.severity in counted for f in findings)


def run(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.clients.advoware.contract", description=__doc__.split("\n\n")[0])
    parser.add_argument("document", help="the firm's Advoware Swagger/OpenAPI document (JSON)")
    parser.add_argument("--json", action="store_true", help="one JSON object per finding")
    parser.add_argument("--strict", action="store_true", help="letter-case differences fail too")
    args = parser.parse_args(list(argv))
    try:
        findings = check(json.loads(Path(args.document).read_text(encoding="utf-8-sig")))
    except (OSError, ValueError) as exc:
        out.write(f"{args.document}: {exc}\n")
        return 2
    for f in findings:
        out.write(json.dumps(asdict(f)) + "\n" if args.json else f.line() + "\n")
    bad = failed(findings, strict=args.strict)
    if not args.json:
        counts = {s: sum(1 for f in findings if f.severity is s) for s in Severity}
        verdict = "FAILED" if bad else "OK"
        out.write(f"{verdict}: {len(P.ENDPOINTS)} endpoints checked; "
                  + ", ".join(f"{n} {s.value.lower()}" for s, n in counts.items()) + "\n")
    return 1 if bad else 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
