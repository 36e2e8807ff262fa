"""Who may use the Advoware proxy: named caller tokens, compared in constant time, and a limit on
failed attempts per client address. Knows nothing of Motia.

Callers (settings `AdvowareSettings.proxy_callers`): `ADVOWARE_PROXY_TOKENS=name:token,...`
(several at once, so each tool is named in the logs and a token can be rotated without
downtime: add the new one, move the caller, remove the old one) plus, for compatibility,
`ADVOWARE_PROXY_TOKEN` as the caller `default`. Every token has at least 32 bytes (the settings
refuse shorter ones). `identify_caller` compares the presented token with every configured one
(`hmac.compare_digest` over SHA-256 digests, so neither a token's length nor which one matched
shows in the timing) and gives the caller's name; the token itself never reaches a log line.

The bearer parsing, the client address and the limit on failed attempts per address
(`AuthFailureLimiter`, here under `FAILURE_KEY_PREFIX`) are services.platform.auth's, shared with
the calendar sync API and the operators' API.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from services.platform.auth import bearer_token, token_digest
from services.proxy.http import ProxyError

__all__ = ["CHALLENGE", "DISABLED_REASON", "FAILURE_KEY_PREFIX", "identify_caller"]

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="advoware-proxy"'}
FAILURE_KEY_PREFIX = "advoware:proxy:authfail:"
DISABLED_REASON = "the Advoware proxy is disabled: neither ADVOWARE_PROXY_TOKENS nor ADVOWARE_PROXY_TOKEN is configured"


def _reveal(secret: Any) -> str:
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
    return "" if value is None else str(value)


def identify_caller(headers: Mapping[str, Any] | None, callers: Mapping[str, Any]) -> str:
    """The name of the caller whose token `Authorization: Bearer` carries.

    ProxyError 503 when no caller is configured (the proxy never runs open), 401 (with a
    `WWW-Authenticate` challenge) when the token is missing or matches none. Every configured
    token is compared, in constant time, whatever matched before."""
    tokens = {name: _reveal(secret) for name, secret in sorted(callers.items())}
    tokens = {name: token for name, token in tokens.items() if token}
    if not tokens:
        raise ProxyError(503, DISABLED_REASON)
    given = bearer_token(headers)
    if given is None:
        raise ProxyError(401, "missing credentials: send Authorization: Bearer <proxy token>", dict(CHALLENGE))
    digest = token_digest(given)
    found = ""
    for name, token in tokens.items():
        same = hmac.compare_digest(digest, token_digest(token))
        found = name if same and not found else found
    if not found:
        raise ProxyError(401, "invalid proxy token", dict(CHALLENGE))
    return found
