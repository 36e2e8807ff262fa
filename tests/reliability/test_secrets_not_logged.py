"""After the whole session: no secret appears in any log line, trace or worker output.

The end-to-end stack runs with recognisable fake secrets (webhook secret, proxy token,
sandbox API keys and passwords, the Advoware bearer token it was issued, read from its sealed
cache); every test that
used the stack has left its logs behind by the time this runs (marked `last`).
"""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from iii_local.testing import MotiaTester
from services.clients.advoware.sealed import TokenSeal
from services.platform.settings import load_settings
from simulators.sandbox import Simulators
from tests.e2e import stack_env


def _secret_values(obj: object) -> list[str]:
    out: list[str] = []
    if isinstance(obj, SecretStr):
        out.append(obj.get_secret_value())
    elif hasattr(obj, "model_fields"):
        for name in type(obj).model_fields:  # type: ignore[attr-defined]
            out.extend(_secret_values(getattr(obj, name)))
    elif isinstance(obj, dict):
        for v in obj.values():
            out.extend(_secret_values(v))
    return out


@pytest.mark.last
async def test_no_secret_in_logs_traces_or_worker_output(stack: MotiaTester, sims: Simulators, redis_url: str) -> None:
    settings = load_settings({**stack.env})
    secrets = {s for s in _secret_values(settings) if len(s) >= 8}
    secrets |= {v for k, v in stack_env(redis_url).items() if k in ("ESPOCRM_WEBHOOK_SECRETS",)}
    secrets |= {v.split(":", 1)[1] for k, v in stack.env.items() if k == "ESPOCRM_WEBHOOK_SECRETS"}
    r = aioredis.from_url(redis_url)
    try:
        cached = await r.get("advoware:token")
    finally:
        await r.aclose()
    # The cache is sealed (services/clients/advoware/sealed.py): open it with the API key.
    assert cached, "no Advoware token was cached: the check would not cover the issued bearer token"
    opened = TokenSeal(settings.advoware.api_key_bytes(), "advoware:token").open(cached)
    assert opened, "the cached Advoware token does not open with the API key"
    token = json.loads(opened).get("access_token")
    assert token and token.encode() not in cached, "the Advoware token must be issued and stored sealed"
    secrets.add(str(token))
    assert secrets, "no secrets to look for"
    logs = json.dumps((await stack.console("GET", "/_console/logs?limit=10000"))["logs"])
    traces = [await stack.trace(t["trace_id"]) for t in (await stack.console("GET", "/_console/traces?limit=300"))["traces"]]
    assert len(logs) > 1000 and stack.engine_output(), "nothing was logged: the check would prove nothing"
    haystacks = {"logs": logs, "traces": json.dumps(traces), "engine and worker output": stack.engine_output()}
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:3]}…) appears in the {where}"
