"""services.proxy.endpoint: the proxy's scope (always-denied paths, the allow-list with methods)
and the settings format it reads (ADVOWARE_PROXY_ALLOWED_PREFIXES, required in production)."""

from __future__ import annotations

import pytest

from services.clients.errors import ConfigError
from services.platform.settings import load_settings
from services.proxy.endpoint import AllowRule, EndpointForbidden, EndpointRejected, check_scope, validate_endpoint

NEVER_FORWARDED = [
    "elmah.axd",
    "ELMAH.AXD/detail",
    "api/v1/elmah.axd",
    "trace.axd",
    "Trace.axd/x",
    "WebResource.axd",
    "api/v1/advonet/ScriptResource.axd",
    "elmah",
    "api/elmah/stream",
    "AdvonetConfigurator/api/Url",
    "advonetconfigurator",
    "api/v1/AdvonetConfigurator/x",
    "api/v1/Token",
    "/API/V1/token",
    "%61pi/v1/Token",
    "elmah%2Eaxd",
    "trace%252Eaxd",
]
"""Safe paths the proxy never forwards, whatever the allow-list (→ 403)."""


@pytest.mark.parametrize("raw", NEVER_FORWARDED)
def test_diagnostic_and_token_paths_are_never_forwarded(raw: str) -> None:
    for allowed in ((), ("api", "elmah.axd", "trace.axd", "AdvonetConfigurator", "elmah", "WebResource.axd")):
        with pytest.raises(EndpointForbidden) as info:
            validate_endpoint(raw, allowed, "GET")
        assert info.value.status == 403 and "not available through the proxy" in info.value.reason


def test_allow_list_checks_the_method() -> None:
    allowed = ("GET:api/v1/advonet/Mitarbeiter", "GET|POST|PUT:api/v1/advonet/TermineActiveSync", "api/v1/Akten")
    assert validate_endpoint("api/v1/advonet/Mitarbeiter", allowed, "GET") == "api/v1/advonet/Mitarbeiter"
    assert validate_endpoint("API/V1/ADVONET/termineactivesync", allowed, "put") == "API/V1/ADVONET/termineactivesync"
    for method in ("GET", "POST", "PUT", "DELETE"):  # a bare prefix: every method
        validate_endpoint("api/v1/Akten/7", allowed, method)
    for method, path in (("POST", "api/v1/advonet/Mitarbeiter"), ("DELETE", "api/v1/advonet/TermineActiveSync"),
                         ("DELETE", "api/v1/advonet/Mitarbeiter/1")):
        with pytest.raises(EndpointForbidden, match=f"{method} is not allowed"):
            validate_endpoint(path, allowed, method)
    with pytest.raises(EndpointForbidden, match="allowed prefix"):
        validate_endpoint("api/v1/advonet/Beteiligte", allowed, "GET")
    # overlapping entries add up: the narrower one adds DELETE below it
    check_scope("api/v1/advonet/Mitarbeiter/3", (*allowed, "DELETE:api/v1/advonet/Mitarbeiter/3"), "DELETE")


def test_forbidden_is_a_rejection_with_its_own_status() -> None:
    """Callers that catch EndpointRejected still see scope refusals; the proxy answers 403 for them."""
    with pytest.raises(EndpointRejected) as info:
        validate_endpoint("api/v1/x", ("api/v1/y",))
    assert isinstance(info.value, EndpointForbidden) and info.value.status == 403
    with pytest.raises(EndpointRejected) as bad:
        validate_endpoint("../x", ("api",))
    assert not isinstance(bad.value, EndpointForbidden) and bad.value.status == 400


def test_allow_rules_parse_the_settings_entries() -> None:
    assert AllowRule.parse("GET|POST:api/v1/Akten") == AllowRule("api/v1/Akten", frozenset({"GET", "POST"}))
    assert AllowRule.parse("/api/v1/Akten/") == AllowRule("api/v1/Akten", frozenset({"GET", "POST", "PUT", "DELETE"}))
    assert AllowRule.parse("*:x").methods == frozenset({"GET", "POST", "PUT", "DELETE"})


def test_allow_list_format_in_the_settings() -> None:
    s = load_settings({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent",
                       "ADVOWARE_PROXY_ALLOWED_PREFIXES": " post | get :/api/v1/Akten/, *:api/v1/advonet,GET|POST|PUT|DELETE:b,,a"})
    assert s.advoware.proxy_allowed_prefixes == ("GET|POST:api/v1/Akten", "api/v1/advonet", "b", "a")
    for bad, message in (("PATCH:api", "unknown method"), ("GET:", "path prefix"), ("GET:api v1", "path prefix"),
                         ("GET:a%2fb", "path prefix")):
        with pytest.raises(ConfigError, match=message):
            load_settings({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent", "ADVOWARE_PROXY_ALLOWED_PREFIXES": bad})


def test_sandbox_has_a_default_scope() -> None:
    s = load_settings({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent"})
    assert s.advoware.proxy_allowed_prefixes == ("api/v1/advonet", "GET:api/v1/Akten")
    with pytest.raises(EndpointForbidden):
        validate_endpoint("api/v1/Akten", s.advoware.proxy_allowed_prefixes, "DELETE")


def test_production_requires_an_allow_list_while_the_proxy_has_callers(prod_env: dict[str, str]) -> None:
    token = "p" * 40
    with pytest.raises(ConfigError, match="ADVOWARE_PROXY_ALLOWED_PREFIXES is required in production"):
        load_settings({**prod_env, "ADVOWARE_PROXY_TOKENS": f"crm:{token}"})
    scoped = load_settings({**prod_env, "ADVOWARE_PROXY_TOKENS": f"crm:{token}",
                            "ADVOWARE_PROXY_ALLOWED_PREFIXES": "GET:api/v1/advonet/Mitarbeiter"})
    assert scoped.advoware.proxy_allowed_prefixes == ("GET:api/v1/advonet/Mitarbeiter",)
    off = load_settings(prod_env)  # no callers: the proxy is off, no list needed
    assert off.advoware.proxy_callers == {}
