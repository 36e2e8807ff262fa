"""services.proxy.auth: named caller tokens (settings rules, constant-time comparison over all of
them), and the proxy refusing a guessing address 429. The client address and the limiter itself
(Redis and in-process): tests/services/platform/test_auth.py."""

from __future__ import annotations

import hmac
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from iii_local.testing import MockRequest, mock_context
from services.clients.errors import ConfigError
from services.platform.auth import AuthFailureLimiter
from services.platform.settings import load_settings
from services.platform.settings.constants import SANDBOX_PROXY_TOKEN
from services.proxy import auth
from services.proxy.advoware import proxy_request
from services.proxy.auth import identify_caller
from services.proxy.http import ProxyError

CRM = "crm-0123456789abcdef0123456789abcdef"
CAL = "cal-0123456789abcdef0123456789abcdef"
SANDBOX = {"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_named_callers_are_identified() -> None:
    callers = {"crm": SecretStr(CRM), "calendar": SecretStr(CAL)}
    assert identify_caller(bearer(CRM), callers) == "crm"
    assert identify_caller({"Authorization": f"bearer   {CAL} "}, callers) == "calendar"
    for headers in ({}, {"authorization": ""}, {"authorization": "Bearer"}, {"authorization": f"Basic {CRM}"},
                    bearer("wrong"), bearer(CRM + "x"), bearer(CRM[:-1]), {"x-proxy-token": CRM}):
        with pytest.raises(ProxyError) as info:
            identify_caller(headers, callers)
        assert info.value.status == 401 and info.value.headers["WWW-Authenticate"].startswith("Bearer")
        assert CRM not in info.value.reason and "crm" not in info.value.reason
    for none in ({}, {"crm": SecretStr("")}, {"crm": None}):
        with pytest.raises(ProxyError) as info:
            identify_caller(bearer(CRM), none)
        assert info.value.status == 503


def test_every_token_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the number and length of the comparisons do not depend on which caller
    matched (digests of equal length are compared), so the timing does not tell."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    callers = {f"c{i}": SecretStr(f"token-{i}-" + "x" * (30 + i)) for i in range(5)}
    for presented, expected in (("token-0-" + "x" * 30, "c0"), ("token-4-" + "x" * 34, "c4"), ("nobody-" + "y" * 50, None)):
        calls.clear()
        try:
            found: str | None = identify_caller(bearer(presented), callers)
        except ProxyError:
            found = None
        assert found == expected
        assert len(calls) == 5 and set(calls) == {(32, 32)}


def test_caller_token_settings() -> None:
    s = load_settings({**SANDBOX, "ADVOWARE_PROXY_TOKENS": f"crm:{CRM}, calendar:{CAL}"})
    assert {k: v.get_secret_value() for k, v in s.advoware.proxy_callers.items()} == {"crm": CRM, "calendar": CAL}
    both = load_settings({**SANDBOX, "ADVOWARE_PROXY_TOKENS": f"crm:{CRM}", "ADVOWARE_PROXY_TOKEN": CAL})
    assert sorted(both.advoware.proxy_callers) == ["crm", "default"]
    bad = {
        "ADVOWARE_PROXY_TOKEN": ("short-token", "shorter than 32 bytes"),
        "ADVOWARE_PROXY_TOKENS": (f"crm:{CRM},cal:short", "shorter than 32 bytes"),
    }
    for name, (value, message) in bad.items():
        with pytest.raises(ConfigError, match=message) as info:
            load_settings({**SANDBOX, name: value})
        assert "short" not in str(info.value).replace("shorter", "")  # the token is never echoed
    for value, message in ((f"crm:{CRM},crm:{CAL}", "appears twice"), (f"crm:{CRM},cal:{CRM}", "also another caller"),
                           (f"bad name:{CRM}", "caller name"), (CRM, "name:token"), (f"crm:{CRM}ä", "may only contain")):
        with pytest.raises(ConfigError, match=message) as info:
            load_settings({**SANDBOX, "ADVOWARE_PROXY_TOKENS": value})
        assert CRM not in str(info.value)
    with pytest.raises(ConfigError, match="may not name a caller 'default'"):
        load_settings({**SANDBOX, "ADVOWARE_PROXY_TOKENS": f"default:{CRM}", "ADVOWARE_PROXY_TOKEN": CAL})
    with pytest.raises(ConfigError, match="also a token in ADVOWARE_PROXY_TOKENS"):
        load_settings({**SANDBOX, "ADVOWARE_PROXY_TOKENS": f"crm:{CRM}", "ADVOWARE_PROXY_TOKEN": CRM})


def test_sandbox_default_token_is_long_and_gives_way_to_named_callers() -> None:
    default = load_settings(SANDBOX).advoware.proxy_callers
    assert list(default) == ["default"] and default["default"].get_secret_value() == SANDBOX_PROXY_TOKEN
    assert len(SANDBOX_PROXY_TOKEN.encode()) >= 32
    named = load_settings({**SANDBOX, "ADVOWARE_PROXY_TOKENS": f"crm:{CRM}"}).advoware.proxy_callers
    assert list(named) == ["crm"]  # the public sandbox token no longer opens the proxy


async def test_failed_authentication_is_limited_per_address() -> None:
    settings = load_settings({**SANDBOX, "ADVOWARE_PROXY_TOKENS": f"crm:{CRM}", "ADVOWARE_PROXY_AUTH_FAILURE_LIMIT": "3"})
    limiter = AuthFailureLimiter(None, limit=3, window_seconds=60, key_prefix=f"proxy-{uuid.uuid4().hex}:")
    ctx = mock_context("http")

    async def call(token: str, address: str) -> Any:
        req = MockRequest(headers={**bearer(token), "x-forwarded-for": address}, query_params={"endpoint": "elmah.axd"})
        return await proxy_request("GET", req, ctx, settings=settings, client=object(), limiter=limiter)

    attacker, other = "203.0.113.66", "203.0.113.7"
    assert [(await call("guess-" + "x" * 40, attacker)).status for _ in range(3)] == [401, 401, 401]
    blocked = await call("guess-" + "y" * 40, attacker)
    assert blocked.status == 429 and int(blocked.headers["Retry-After"]) >= 59
    assert (await call(CRM, attacker)).status == 429  # even the right token: nothing is compared while blocked
    assert (await call(CRM, other)).status == 403  # another address is authenticated (and elmah refused)
    logged = [(msg, data) for _, msg, data in ctx.logger.records]
    assert any(data.get("client") == attacker and data.get("status") == 429 for _, data in logged)
    assert any(data.get("caller") == "crm" and data.get("status") == 403 for _, data in logged)
    assert CRM not in repr(logged)
