"""Webhook signatures under attack: forged, replayed with a changed body, wrong webhook id,
legacy header — refused with 401 and nothing queued; the genuine ones pass (both headers).
Requests come as nginx forwards them in production (deploy/nginx/bitbylaw-motia-locations.conf):
the exact bytes as application/octet-stream, which the real engine streams to the handler (H2).

The token mode (ESPOCRM_WEBHOOK_TOKEN) is checked on `authenticate` directly: the token comes in
the webhook URL's query string (`?token=`), since EspoCRM's sender
(application/Espo/Core/Webhook/Sender.php) sends only Content-Type, Content-Length, Signature and
X-Signature; nginx hands it on as X-Auth-Token. tests/deploy/test_nginx.py runs it end to end."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from iii_local.testing import MotiaTester
from services.clients.errors import ConfigError
from services.clients.espocrm_webhooks import legacy_signature, php_json_encode, sign_body
from services.platform import auth as platform_auth
from services.platform.settings import Settings, WebhookAuthMode, load_settings
from services.webhooks.intake import WebhookRejected, authenticate
from tests.e2e import WEBHOOK_ID, WEBHOOK_SECRET
from tests.services.platform.test_settings import prod_env, sa_file  # noqa: F401  (fixtures)

ENDPOINT = "/vmh/webhook/document/update"
AS_NGINX_FORWARDS = {"Content-Type": "application/octet-stream", "X-Original-Content-Type": "application/json"}
TOKEN = "tok-0123456789abcdef0123456789abcdef"


async def _post(stack: MotiaTester, body: bytes, headers: dict[str, str]) -> tuple[int, list[dict]]:
    r = await stack.post(ENDPOINT, data=body, headers={**AS_NGINX_FORWARDS, **headers})
    trace = r.headers.get("x-iii-trace-id", "")
    msgs = await stack.messages(trace) if trace else []
    assert trace, "every answer carries its trace id"
    return r.status, msgs


def _body() -> bytes:
    return php_json_encode([{"id": f"sig{uuid.uuid4().hex[:12]}", "name": "Vertrag/2026 ü"}])


async def test_genuine_signatures_are_accepted(stack: MotiaTester) -> None:
    body = _body()
    status, msgs = await _post(stack, body, {"Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, body)})
    assert status == 200 and len(msgs) == 1
    body = _body()
    status, msgs = await _post(stack, body, {"X-Signature": legacy_signature(WEBHOOK_ID, WEBHOOK_SECRET, body)})
    assert status == 200 and len(msgs) == 1


async def test_forged_and_tampered_signatures_are_refused(stack: MotiaTester) -> None:
    body = _body()
    good = sign_body(WEBHOOK_ID, WEBHOOK_SECRET, body)
    tampered = body.replace(b"Vertrag", b"Vertraq")
    cases = {
        "missing": {},
        "forged secret": {"Signature": sign_body(WEBHOOK_ID, "not-the-secret", body)},
        "wrong webhook id": {"Signature": sign_body("other-hook", WEBHOOK_SECRET, body)},
        "garbage": {"Signature": "!!!not base64!!!"},
        "empty": {"Signature": ""},
        "legacy forged": {"X-Signature": legacy_signature(WEBHOOK_ID, "nope", body)},
        "legacy as hex in new header": {"Signature": base64.b64encode(WEBHOOK_ID.encode() + b":" + hmac.new(b"x", body, hashlib.sha256).digest()).decode()},
    }
    for name, headers in cases.items():
        status, msgs = await _post(stack, body, headers)
        assert status == 401, f"{name}: {status}"
        assert msgs == [], f"{name}: queued {msgs}"
    # Replayed signature over a changed body.
    status, msgs = await _post(stack, tampered, {"Signature": good})
    assert status == 401 and msgs == []
    # A token (in the URL, or as nginx hands it on) is no substitute when only signatures are configured.
    r = await stack.post(f"{ENDPOINT}?token={WEBHOOK_SECRET}", data=body, headers={**AS_NGINX_FORWARDS, "X-Auth-Token": WEBHOOK_SECRET})
    assert r.status == 401 and await stack.messages(r.headers["x-iii-trace-id"]) == []


async def test_signed_but_malformed_is_400_and_queues_nothing(stack: MotiaTester) -> None:
    for body in (b"{not json", json.dumps({"no": "id"}).encode(), b"[]", json.dumps([{"id": "x"}] * 51).encode(), b'"a string"'):
        status, msgs = await _post(stack, body, {"Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, body)})
        assert status == 400, (body[:40], status)
        assert msgs == []


async def test_partially_valid_batch_reports_rejects_and_collapses_duplicates(stack: MotiaTester) -> None:
    good = f"pv{uuid.uuid4().hex[:12]}"
    body = json.dumps([{"id": good}, {"id": "bad id with spaces"}, {"id": good}, 42]).encode()
    r = await stack.post(ENDPOINT, data=body, headers={**AS_NGINX_FORWARDS, "Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, body)})
    assert r.status == 200
    answer = r.json()
    assert answer["accepted"] == 1
    assert [x["index"] for x in answer["rejected"]] == [1, 3]


# ---------------------------------------------------------------- token mode (authenticate)


def _settings(**env: str) -> Settings:
    return load_settings({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env", **env})


def _refusal(settings: Settings, *, query: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> WebhookRejected | None:
    try:
        authenticate(headers or {}, b"[]", None, settings, query=query)
    except WebhookRejected as exc:
        return exc
    return None


def test_token_in_the_url_is_accepted_and_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(ESPOCRM_WEBHOOK_TOKEN=TOKEN)
    assert settings.webhook_auth_mode is WebhookAuthMode.TOKEN
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    # The intake compares through the shared check (services.platform.auth.token_matches):
    # hmac.compare_digest over SHA-256 digests, so not even the token's length shows.
    monkeypatch.setattr(platform_auth.hmac, "compare_digest", spy)
    assert _refusal(settings, query={"token": TOKEN}) is None
    assert _refusal(settings, query={"token": [TOKEN, TOKEN]}) is None
    assert _refusal(settings, headers={"X-Auth-Token": TOKEN}) is None  # as nginx hands it on
    assert compared and all(b == platform_auth.token_digest(TOKEN) for _, b in compared)


@pytest.mark.parametrize(
    "query, headers",
    [
        (None, None),
        ({"token": ""}, None),
        ({"token": TOKEN[:-1]}, None),
        ({"token": TOKEN + "x"}, None),
        ({"token": [TOKEN, "other"]}, None),
        ({"Token": TOKEN}, None),
        ({"token": "wrong"}, {"X-Auth-Token": TOKEN}),  # the URL's token is the one that counts
        (None, {"X-Webhook-Token": TOKEN}),  # the old header mode is gone
        (None, {"Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, b"[]")}),
    ],
)
def test_token_mode_refuses_everything_else_without_showing_the_token(query: dict[str, Any] | None, headers: dict[str, str] | None) -> None:
    refusal = _refusal(_settings(ESPOCRM_WEBHOOK_TOKEN=TOKEN), query=query, headers=headers)
    assert refusal is not None and refusal.status == 401
    assert TOKEN not in json.dumps(refusal.body())


def test_token_next_to_signatures_is_required_as_well_never_instead() -> None:
    """With both configured, both are required: the token alone no longer passes (issue #14)."""
    settings = _settings(ESPOCRM_WEBHOOK_TOKEN=TOKEN, ESPOCRM_WEBHOOK_SECRETS=f"{WEBHOOK_ID}:{WEBHOOK_SECRET}")
    assert settings.webhook_auth_mode is WebhookAuthMode.SIGNATURE
    signed = {"Signature": sign_body(WEBHOOK_ID, WEBHOOK_SECRET, b"[]")}
    assert _refusal(settings, query={"token": TOKEN}, headers=signed) is None
    for query, headers in (({"token": TOKEN}, None), (None, signed), ({"token": "wrong"}, signed)):
        refusal = _refusal(settings, query=query, headers=headers)
        assert refusal is not None and refusal.status == 401, (query, headers)


@pytest.mark.parametrize("token", ["has space", "a&token=b", "percent%41", "slash/", "ümlaut", "plus+"])
def test_webhook_token_must_be_url_safe_and_errors_do_not_show_it(token: str) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(ESPOCRM_WEBHOOK_TOKEN=token)
    assert "ESPOCRM_WEBHOOK_TOKEN" in str(info.value)
    assert token not in str(info.value)


@pytest.mark.parametrize("name", ["ESPOCRM_WEBHOOK_TOKEN", "OPS_TOKEN"])
def test_production_refuses_a_short_webhook_or_ops_token(name: str, prod_env: dict[str, str], sa_file: Path) -> None:  # noqa: F811
    with pytest.raises(ConfigError) as info:
        load_settings({**prod_env, name: "short-token-" + "x" * 19})  # 31 characters
    assert f"{name} is shorter than 32 characters" in str(info.value) and "short-token" not in str(info.value)
    long = load_settings({**prod_env, name: "a" * 32})
    assert not any(name in w for w in long.warnings)
    sandbox = load_settings({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env", name: "short-token"})
    assert sandbox.mode == "sandbox"


def test_a_logged_webhook_url_does_not_show_the_token() -> None:
    from services.platform.logging import redact, redact_text

    url = f"https://hooks.example.com/vmh/webhook/document/create?token={TOKEN}"
    assert TOKEN not in redact_text(f"POST {url} failed")
    assert TOKEN not in json.dumps(redact({"url": url, "nested": [f"{ENDPOINT}?x=1&token={TOKEN}"]}))
    assert redact_text(f"{ENDPOINT}?endpoint=Akten/1") == f"{ENDPOINT}?endpoint=Akten/1"
