"""The Advoware contract check (services.clients.advoware.contract) against a sample Swagger
document written from external-apis.md §3 (advoware_swagger.json, Swagger 2.0, and the same as
OpenAPI 3): the clean case, every kind of mismatch, and that `paths.ENDPOINTS` lists exactly
the calls the client makes (its requests against the Advoware simulator)."""

from __future__ import annotations

import copy
import io
import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp

from services.clients.advoware import paths as P
from services.clients.advoware.contract import Severity, check, run
from tests.advoware_demo import advoware_demo, demo_client

SAMPLE = Path(__file__).with_name("advoware_swagger.json")
BANKS = "/api/v1/advonet/Beteiligte/{betNr}/Bankverbindungen"


def swagger() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SAMPLE.read_text())
    return doc


def as_openapi3(doc: dict[str, Any]) -> dict[str, Any]:
    """The Swagger 2.0 sample as OpenAPI 3 (servers, components, requestBody, content)."""
    text = json.dumps(doc).replace("#/definitions/", "#/components/schemas/")
    old = json.loads(text)
    paths: dict[str, Any] = {}
    for key, item in old["paths"].items():
        paths[key] = {}
        for method, op in item.items():
            if method == "parameters":
                paths[key][method] = [{**p, "schema": {"type": p.pop("type")}} for p in op]
                continue
            new = {k: v for k, v in op.items() if k not in ("parameters", "responses")}
            params = op.get("parameters") or []
            new["parameters"] = [{**p, "schema": {"type": p.pop("type")}} for p in params if p["in"] != "body"]
            for p in params:
                if p["in"] == "body":
                    new["requestBody"] = {"content": {"application/json": {"schema": p["schema"]}}}
            new["responses"] = {
                code: {"description": r["description"], **({"content": {"application/json": {"schema": r["schema"]}}} if "schema" in r else {})}
                for code, r in op["responses"].items()
            }
            paths[key][method] = new
    return {"openapi": "3.0.1", "info": old["info"], "servers": [{"url": "https://kanzlei.example/"}], "paths": paths,
            "components": {"schemas": old["definitions"]}}


def lines(findings: list[Any], severity: Severity) -> list[str]:
    return [f.line() for f in findings if f.severity is severity]


async def command(doc: Any, tmp_path: Path, *args: str) -> tuple[int, str]:
    target = tmp_path / "swagger.json"
    target.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    out = io.StringIO()
    return run([str(target), *args], out), out.getvalue()


async def test_the_sample_matches_the_client_in_both_formats(tmp_path: Path) -> None:
    assert check(swagger()) == []
    assert check(as_openapi3(swagger())) == []
    code, text = await command(swagger(), tmp_path)
    assert code == 0 and text.startswith("OK: 17 endpoints checked")


async def test_every_kind_of_mismatch_is_reported_with_hints(tmp_path: Path) -> None:
    doc = swagger()
    paths, defs = doc["paths"], doc["definitions"]
    paths["/api/v1/advonet/Beteiligte/{betNr}/Bankverbindung"] = paths.pop(BANKS)  # renamed path
    del paths["/api/v1/advonet/Beteiligte/{betNr}"]["put"]  # a method missing
    paths["/api/v1/advonet/Beteiligte"]["get"]["parameters"] = [
        p for p in paths["/api/v1/advonet/Beteiligte"]["get"]["parameters"] if p["name"] != "geaendertSeit"
    ]
    props = defs["Beteiligter"]["properties"]
    props["ExternalId"] = props.pop("ExterneId")  # named differently
    props["Plz"] = props.pop("PLZ")  # letter case only
    for variant in (doc, as_openapi3(doc)):
        findings = check(variant)
        missing = lines(findings, Severity.MISSING)
        assert any(f"GET api/v1/advonet/Beteiligte/{{betNr}}/Bankverbindungen: path not in the document (near: {BANKS[:-2]}," in m
                   for m in missing), missing
        assert "MISSING  PUT api/v1/advonet/Beteiligte/{betNr}: method PUT not on this path (it has DELETE, GET)" in missing
        assert any("query parameter geaendertSeit not in the document" in m for m in missing)
        assert any("response field ExterneId not in the document (near: ExternalId)" in m for m in missing)
        assert any("request field ExterneId not in the document (near: ExternalId)" in m for m in missing)
        assert any("response field PLZ is named Plz" in c for c in lines(findings, Severity.CASE))
    code, text = await command(doc, tmp_path)
    assert code == 1 and "FAILED" in text.splitlines()[-1]
    code, text = await command(doc, tmp_path, "--json")
    assert code == 1 and {json.loads(x)["severity"] for x in text.splitlines()} == {"MISSING", "CASE"}


async def test_letter_case_alone_fails_only_when_strict(tmp_path: Path) -> None:
    doc = swagger()
    doc["definitions"]["Bankverbindung"]["properties"]["Iban"] = doc["definitions"]["Bankverbindung"]["properties"].pop("IBAN")
    doc["paths"]["/api/v1/advonet/termineactivesync"] = doc["paths"].pop("/api/v1/advonet/TermineActiveSync")
    assert (await command(doc, tmp_path))[0] == 0
    code, text = await command(doc, tmp_path, "--strict")
    assert code == 1 and "path is named /api/v1/advonet/termineactivesync" in text


async def test_a_schema_less_answer_is_a_note_and_not_a_document_fails(tmp_path: Path) -> None:
    doc = copy.deepcopy(swagger())
    del doc["paths"]["/api/v1/advonet/Mitarbeiter"]["get"]["responses"]["200"]["schema"]
    [note] = check(doc)
    assert note.severity is Severity.NOTE and "not checked" in note.what
    assert (await command(doc, tmp_path))[0] == 0
    assert (await command({"openapi": "3.0.0"}, tmp_path))[0] == 2
    assert (await command("{not json", tmp_path))[0] == 2


async def test_the_table_lists_exactly_the_calls_the_client_makes() -> None:
    """Every public call of AdvowareAPI against the simulator; each request it sent must match
    one ENDPOINTS row (method, path, query names) and every row must have been used."""
    async with advoware_demo() as sim:
        api = demo_client(f"{sim.url}/", f"{sim.url}/api/v1/Token")
        try:
            today = date.today()
            [first, *_] = await api.list_appointments("MM", today - timedelta(days=30), today + timedelta(days=30))
            frnr = int(first["FrNr"])
            await api.update_appointment(frnr, {"Text": "geändert"})
            created = await api.create_appointment({"Text": "neu", "Datum": "2026-03-02T09:00:00Z", "DatumBis": "2026-03-02T00:00:00Z",
                                                    "UhrzeitBis": "10:00:00", "Anwalt": "MM"})
            await api.delete_appointment(int(created["FrNr"]))
            await api.list_employees()
            [matter, *_] = await api.list_matters()
            await api.get_matter(int(matter["Nr"]))
            _ = [page async for page in api.list_parties(changed_since="2020-01-01T00:00:00Z", name="a")]
            party = await api.create_party({"Name": "Vertrag", "ExterneId": "x1"})
            betnr = int(party["BetNr"])
            assert (await api.find_party_by_external_id("x1")) is not None
            await api.update_party(betnr, {"Ort": "Köln"})
            bank = await api.create_bank_account(betnr, {"IBAN": "DE89370400440532013000"})
            await api.update_bank_account(betnr, int(bank["Id"]), {"Bank": "B"})
            await api.delete_bank_account(betnr, int(bank["Id"]))
            await api.delete_party(betnr)
        finally:
            await api.close()
        async with aiohttp.ClientSession() as s, s.get(f"{sim.url}/_sim/requests") as resp:
            requests = [r for r in await resp.json() if "/Token" not in r["path"]]
    rows = [(ep, re.compile("^/" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(ep.path)) + "$")) for ep in P.ENDPOINTS]
    used: set[int] = set()
    for r in requests:
        names = set(parse_qs(r.get("query") or ""))
        hits = [i for i, (ep, rx) in enumerate(rows) if ep.method == r["method"] and rx.match(r["path"]) and names <= set(ep.query)]
        assert hits, f"{r['method']} {r['path']} {sorted(names)} is not in paths.ENDPOINTS"
        used.add(hits[0])
    assert [f"{ep.method} {ep.path}" for i, (ep, _) in enumerate(rows) if i not in used] == []
