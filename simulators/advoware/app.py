"""Advoware simulator: the aiohttp app (token gateway, discovery, api/v1 routes, case-insensitive dispatch)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.advoware.records import (
    Handler,
    Invalid,
    api_error,
    format_expiration,
    invalid_response,
    query_date,
    query_int,
    utc_now,
)
from simulators.advoware.state import AdvowareConfig, AdvowareState
from simulators.advoware.wire import (
    AKTEN_ROUTE,
    ALL_KUERZEL,
    BANKVERBINDUNGEN_SEGMENT,
    BETEILIGTE_ROUTE,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PRODUCT,
    DEFAULT_ROLE,
    DISCOVERY_ROUTE,
    GENERAL_KUERZEL,
    MAX_PAGE_SIZE,
    MITARBEITER_ROUTE,
    TERMINE_ROUTE,
    TIMESTAMP_WINDOW_SECONDS,
    TOKEN_ROUTE,
    AkteField,
    BankverbindungField,
    BeteiligteQuery,
    BeteiligterField,
    DiscoveryField,
    TerminField,
    TerminQuery,
    TokenField,
    TokenResponseField,
    format_utc,
    parse_utc,
    parse_wall_clock,
)
from simulators.base import make_seeded_app


@dataclass
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool = True


STATE = web.AppKey("advoware_state", AdvowareState)


def _page(items: list[dict[str, Any]], request: web.Request) -> list[dict[str, Any]]:
    skip = query_int(BeteiligteQuery.SKIP, request.query.get(BeteiligteQuery.SKIP), 0)
    take = query_int(BeteiligteQuery.TAKE, request.query.get(BeteiligteQuery.TAKE), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    return items[skip : skip + take]


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        raise Invalid("Der Anfrageinhalt fehlt.")
    try:
        body = json.loads(raw)
    except ValueError:
        raise Invalid("Der Anfrageinhalt ist kein gültiges JSON.") from None
    if not isinstance(body, dict):
        raise Invalid("Der Anfrageinhalt muss ein JSON-Objekt sein.")
    return body


def create_app(
    api_key_b64: str,
    app_id: str,
    kanzlei: str,
    database: str,
    user: str,
    password: str,
    *,
    token_ttl_seconds: int = 3600,
    seed: dict[str, Any] | str | Path | None = None,
    role: int = DEFAULT_ROLE,
    product: int = DEFAULT_PRODUCT,
) -> web.Application:
    """The Advoware simulator app. `seed` is a seed document or a JSON file path (None: empty;
    `load_demo_seed()` gives the demo data); it is loaded at start and on `/_sim/reset {"seed": true}`."""
    try:
        key = base64.b64decode(api_key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("api_key_b64 is not valid base64") from exc
    config = AdvowareConfig(key, app_id, kanzlei, database, user, password, role, product, token_ttl_seconds)
    state = AdvowareState(config)
    app = make_seeded_app(state, seed, load=state.load, drop=state.drop_data)
    app[STATE] = state

    # --- token gateway and discovery ------------------------------------------------
    async def token(request: web.Request, _: dict[str, str]) -> web.Response:
        body = await _json_body(request)
        missing = [f.value for f in TokenField if body.get(f.value) in (None, "")]
        if missing:
            return api_error(400, f"Ungültige Anmeldeanfrage: es fehlen {', '.join(missing)}.")
        if str(body[TokenField.APP_ID]) != config.app_id:
            return api_error(401, f"Die Anwendung {body[TokenField.APP_ID]} ist nicht registriert.")
        stamp = str(body[TokenField.TIMESTAMP])
        try:
            sent_at = parse_utc(stamp)
        except ValueError:
            return api_error(400, f"Ungültiger RequestTimeStamp: {stamp}")
        message = f"{body[TokenField.PRODUCT]}:{body[TokenField.APP_ID]}:{body[TokenField.NONCE]}:{stamp}"
        expected = base64.b64encode(hmac.new(config.api_key, message.encode("utf-8"), hashlib.sha512).digest()).decode()
        if not hmac.compare_digest(expected, str(body[TokenField.SIGNATURE])):
            return api_error(401, "Die HMAC512Signature ist ungültig.")
        if abs(time.time() - sent_at.timestamp()) > TIMESTAMP_WINDOW_SECONDS:
            return api_error(401, "Der RequestTimeStamp liegt außerhalb des erlaubten Zeitfensters (±5 Minuten).")
        if not state.use_nonce(str(body[TokenField.NONCE])):
            return api_error(401, "Die Nonce wurde bereits verwendet (Wiederholungsangriff abgewiesen).")
        if (
            str(body[TokenField.KANZLEI]).lower() != config.kanzlei.lower()
            or str(body[TokenField.DATABASE]).lower() != config.database.lower()
        ):
            return api_error(
                401, f"Kanzlei {body[TokenField.KANZLEI]} / Datenbank {body[TokenField.DATABASE]} ist nicht registriert."
            )
        if str(body[TokenField.USER]) != config.user or str(body[TokenField.PASSWORD]) != config.password:
            return api_error(401, "Anmeldung fehlgeschlagen: Falscher Name oder falsches Kennwort.")
        try:
            role_ok = int(body[TokenField.ROLE]) == config.role
            product_ok = int(body[TokenField.PRODUCT]) == config.product
        except (TypeError, ValueError):
            return api_error(400, "Role und Product müssen Ganzzahlen sein.")
        if not (role_ok and product_ok):
            return api_error(
                401,
                f"Produkt {body[TokenField.PRODUCT]} / Rolle {body[TokenField.ROLE]} ist für "
                f"{body[TokenField.USER]} nicht freigeschaltet.",
            )
        access_token, expires = state.issue_token()
        return web.json_response(
            {TokenResponseField.ACCESS_TOKEN.value: access_token, TokenResponseField.EXPIRATION_UTC.value: format_expiration(expires)}
        )

    async def discovery(request: web.Request, _: dict[str, str]) -> web.Response:
        wanted = request.query.get("Kanzlei") or request.query.get("kanzlei") or ""
        if wanted.lower() != config.kanzlei.lower():
            return api_error(404, f"Kanzlei {wanted} ist nicht registriert.")
        base = f"{request.scheme}://{request.host}/"
        return web.json_response(
            {DiscoveryField.RELAY_URL.value: base, DiscoveryField.CONNECTOR_URL.value: base, DiscoveryField.SECURITY_GATEWAY.value: base}
        )

    # --- matters and employees ------------------------------------------------------
    async def list_akten(request: web.Request, _: dict[str, str]) -> web.Response:
        items = [state.akten[nr] for nr in sorted(state.akten)]
        return web.json_response(_page(items, request))

    async def get_akte(request: web.Request, params: dict[str, str]) -> web.Response:
        nr = int(params["id"])
        if nr not in state.akten:
            return api_error(404, f"Die Akte {nr} wurde nicht gefunden.")
        return web.json_response(state.akten[nr])

    async def list_mitarbeiter(request: web.Request, _: dict[str, str]) -> web.Response:
        return web.json_response([state.mitarbeiter[k] for k in sorted(state.mitarbeiter)])

    # --- appointments ---------------------------------------------------------------
    def frnr_param(request: web.Request) -> int | None:
        raw = request.query.get(TerminQuery.FRNR)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise Invalid(f'Der Parameter "frnr" muss eine Ganzzahl sein: "{raw}".', TerminQuery.FRNR) from None

    def required_frnr(request: web.Request) -> int:
        frnr = frnr_param(request)
        if frnr is None:
            raise Invalid('Der Parameter "frnr" ist erforderlich.', TerminQuery.FRNR)
        return frnr

    def termin_matches(rec: dict[str, Any], kuerzel: str | None, start: date, end: date) -> bool:
        if kuerzel:
            k = kuerzel.upper()
            anwalt = (rec.get(TerminField.ANWALT) or "").upper()
            sb = (rec.get(TerminField.SB) or "").upper()
            if k == GENERAL_KUERZEL.upper():
                if anwalt not in ("", ALL_KUERZEL):
                    return False
            elif k not in (anwalt, sb):
                return False
        first = parse_wall_clock(rec[TerminField.DATUM]).date()
        last = parse_wall_clock(rec[TerminField.DATUM_BIS]).date()
        return first <= end and last >= start

    async def termine_get(request: web.Request, _: dict[str, str]) -> web.Response:
        frnr = frnr_param(request)
        if frnr is not None:
            rec = state.termine.get(frnr)
            if rec is None:
                return api_error(404, f"Der Termin mit FrNr {frnr} wurde nicht gefunden.")
            return web.json_response(rec)
        raw_from, raw_to = request.query.get(TerminQuery.FROM), request.query.get(TerminQuery.TO)
        if not raw_from or not raw_to:
            raise Invalid('Die Parameter "from" und "to" (oder "frnr") sind erforderlich.', TerminQuery.FROM)
        start, end = query_date(TerminQuery.FROM, raw_from), query_date(TerminQuery.TO, raw_to)
        kuerzel = request.query.get(TerminQuery.KUERZEL)
        items = [r for r in state.termine.values() if termin_matches(r, kuerzel, start, end)]
        items.sort(key=lambda r: (r[TerminField.DATUM], r[TerminField.FRNR]))
        return web.json_response(items)

    async def termine_post(request: web.Request, _: dict[str, str]) -> web.Response:
        rec = state.termine.put(await _json_body(request), format_utc(utc_now()))
        return web.json_response(rec[TerminField.FRNR])

    async def termine_put(request: web.Request, _: dict[str, str]) -> web.Response:
        frnr = required_frnr(request)
        if frnr not in state.termine:
            return api_error(404, f"Der Termin mit FrNr {frnr} wurde nicht gefunden.")
        if frnr < 0:
            return api_error(400, f"Der Termin {frnr} ist ein abgeleiteter Termin und kann nicht geändert werden.")
        return web.json_response(state.termine.put(await _json_body(request), format_utc(utc_now()), frnr))

    async def termine_delete(request: web.Request, _: dict[str, str]) -> web.Response:
        frnr = required_frnr(request)
        if state.termine.pop(frnr, None) is None:
            return api_error(404, f"Der Termin mit FrNr {frnr} wurde nicht gefunden.")
        return web.Response(status=200)

    # --- parties ----------------------------------------------------------------------
    def party_or_404(params: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
        betnr = int(params["betnr"])
        return betnr, state.beteiligte.get(betnr)

    def party_missing(betnr: int) -> web.Response:
        return api_error(404, f"Der Beteiligte {betnr} wurde nicht gefunden.")

    async def beteiligte_list(request: web.Request, _: dict[str, str]) -> web.Response:
        items = [state.beteiligte[n] for n in sorted(state.beteiligte)]
        name = request.query.get(BeteiligteQuery.NAME)
        if name:
            needle = name.lower()
            items = [
                p
                for p in items
                if needle in (p.get(BeteiligterField.NAME) or "").lower()
                or needle in (p.get(BeteiligterField.VORNAME) or "").lower()
            ]
        since_raw = request.query.get(BeteiligteQuery.CHANGED_SINCE)
        if since_raw:
            try:
                since = parse_utc(since_raw)
            except ValueError:
                raise Invalid(
                    f'Der Parameter "geaendertSeit" ist kein gültiger Zeitpunkt: "{since_raw}".', BeteiligteQuery.CHANGED_SINCE
                ) from None
            since = since.replace(microsecond=since.microsecond // 1000 * 1000)
            items = [p for p in items if parse_utc(p[BeteiligterField.GEAENDERT_AM]) >= since]
        external = request.query.get(BeteiligteQuery.EXTERNAL_ID)
        if external:
            items = [p for p in items if p.get(BeteiligterField.EXTERNE_ID) == external]
        return web.json_response(_page(items, request))

    async def beteiligte_post(request: web.Request, _: dict[str, str]) -> web.Response:
        rec = state.beteiligte.put(await _json_body(request), format_utc(utc_now()))
        return web.json_response(rec, status=201)

    async def beteiligter_get(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, rec = party_or_404(params)
        return party_missing(betnr) if rec is None else web.json_response(rec)

    async def beteiligter_put(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, rec = party_or_404(params)
        if rec is None:
            return party_missing(betnr)
        return web.json_response(state.beteiligte.put(await _json_body(request), format_utc(utc_now()), betnr))

    async def beteiligter_delete(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, rec = party_or_404(params)
        if rec is None:
            return party_missing(betnr)
        linked = state.akten_of(betnr)
        if linked:
            azs = ", ".join(str(a.get(AkteField.AZ) or a[AkteField.NR]) for a in linked)
            return api_error(
                409,
                f"Der Beteiligte {betnr} kann nicht gelöscht werden, da er noch mit {len(linked)} Akte(n) "
                f"verknüpft ist ({azs}).",
            )
        del state.beteiligte[betnr]
        for bank_id in [b for b, owner in state.bank_owner.items() if owner == betnr]:
            state.bankverbindungen.pop(bank_id, None)
            state.bank_owner.pop(bank_id, None)
        return web.Response(status=200)

    # --- bank accounts ----------------------------------------------------------------
    def bank_or_404(params: dict[str, str]) -> tuple[int, int, dict[str, Any] | None]:
        betnr, bank_id = int(params["betnr"]), int(params["id"])
        if state.bank_owner.get(bank_id) != betnr:
            return betnr, bank_id, None
        return betnr, bank_id, state.bankverbindungen.get(bank_id)

    def bank_missing(betnr: int, bank_id: int) -> web.Response:
        return api_error(404, f"Die Bankverbindung {bank_id} des Beteiligten {betnr} wurde nicht gefunden.")

    async def banks_list(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, rec = party_or_404(params)
        if rec is None:
            return party_missing(betnr)
        ids = sorted(b for b, owner in state.bank_owner.items() if owner == betnr)
        return web.json_response([state.bankverbindungen[b] for b in ids])

    async def banks_post(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, rec = party_or_404(params)
        if rec is None:
            return party_missing(betnr)
        bank = state.bankverbindungen.put(await _json_body(request), format_utc(utc_now()))
        state.bank_owner[bank[BankverbindungField.ID]] = betnr
        return web.json_response(bank, status=201)

    async def bank_get(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, bank_id, bank = bank_or_404(params)
        return bank_missing(betnr, bank_id) if bank is None else web.json_response(bank)

    async def bank_put(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, bank_id, bank = bank_or_404(params)
        if bank is None:
            return bank_missing(betnr, bank_id)
        return web.json_response(state.bankverbindungen.put(await _json_body(request), format_utc(utc_now()), bank_id))

    async def bank_delete(request: web.Request, params: dict[str, str]) -> web.Response:
        betnr, bank_id, bank = bank_or_404(params)
        if bank is None:
            return bank_missing(betnr, bank_id)
        del state.bankverbindungen[bank_id]
        del state.bank_owner[bank_id]
        return web.Response(status=200)

    # --- routing ----------------------------------------------------------------------
    def route(methods: Iterable[str], path: str, handler: Handler, *, auth: bool = True) -> Route:
        return Route(frozenset(methods), re.compile(f"^{path}$", re.IGNORECASE), handler, auth)

    def resource(path: str, **handlers: Handler) -> list[Route]:
        """One authenticated route per method (`GET=handler, ...`) of the resource at `path`."""
        return [route([method], path, handler) for method, handler in handlers.items()]

    num = r"(?P<{}>-?\d+)"
    party = BETEILIGTE_ROUTE + "/" + num.format("betnr")
    banks = party + "/" + BANKVERBINDUNGEN_SEGMENT
    routes = [
        route(["POST"], TOKEN_ROUTE, token, auth=False),
        route(["GET"], DISCOVERY_ROUTE, discovery, auth=False),
        *resource(AKTEN_ROUTE, GET=list_akten),
        *resource(AKTEN_ROUTE + "/" + num.format("id"), GET=get_akte),
        *resource(MITARBEITER_ROUTE, GET=list_mitarbeiter),
        *resource(TERMINE_ROUTE, GET=termine_get, POST=termine_post, PUT=termine_put, DELETE=termine_delete),
        *resource(BETEILIGTE_ROUTE, GET=beteiligte_list, POST=beteiligte_post),
        *resource(party, GET=beteiligter_get, PUT=beteiligter_put, DELETE=beteiligter_delete),
        *resource(banks, GET=banks_list, POST=banks_post),
        *resource(banks + "/" + num.format("id"), GET=bank_get, PUT=bank_put, DELETE=bank_delete),
    ]

    def authorized(request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and bool(value.strip()) and state.token_valid(value.strip())

    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        allowed: set[str] = set()
        for r in routes:
            m = r.pattern.match(path)
            if not m:
                continue
            if request.method not in r.methods:
                allowed |= r.methods
                continue
            if r.auth and not authorized(request):
                return api_error(
                    401,
                    "Der Benutzer ist nicht angemeldet: Bearer-Token fehlt, ist ungültig oder abgelaufen.",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            try:
                return await r.handler(request, {k: v for k, v in m.groupdict().items() if v is not None})
            except Invalid as exc:
                return invalid_response(exc)
        if allowed:
            return api_error(
                405,
                f"The requested resource does not support http method '{request.method}'.",
                headers={"Allow": ", ".join(sorted(allowed))},
            )
        return api_error(404, f"No HTTP resource was found that matches the request URI '{request.url}'.")

    async def expire_tokens(request: web.Request) -> web.Response:
        return web.json_response({"expired": state.expire_tokens()})

    app.router.add_post("/_sim/expire-tokens", expire_tokens)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


