"""One client per external system per worker process, built from the validated settings.

Steps call `get_espocrm()`, `get_xai()`, `get_advoware()`, `get_google_calendar()`,
`get_redis_client()` and `get_ledger()` instead of constructing clients, so a worker keeps one aiohttp
session (and connection pool) per system. Clients are bound to the event loop they were
created on; a new loop (tests) gets new clients.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from services.platform.settings import Settings, get_settings

if TYPE_CHECKING:
    from services.clients.advoware.token import AdvowareLogin

T = TypeVar("T")
_cache: dict[tuple[int, str], Any] = {}
_closers: dict[int, asyncio.Task[None]] = {}


def _cached(name: str, factory: Callable[[Settings], T]) -> T:
    loop = asyncio.get_running_loop()
    key = (id(loop), name)
    client = _cache.get(key)
    if client is None:
        client = factory(get_settings())
        _cache[key] = client
        _close_with_the_loop(loop)
    return client


def _close_with_the_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close this loop's clients when the loop shuts down: `asyncio.run` (how motia runs the
    worker) cancels every task at its end, and this one closes the clients when cancelled."""
    if id(loop) in _closers and not _closers[id(loop)].done():
        return

    async def close_on_shutdown() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            _closers.pop(id(loop), None)
            await close_all()

    _closers[id(loop)] = loop.create_task(close_on_shutdown(), name="close API clients")


def get_redis_client() -> Any:
    """The shared Redis client; the entity locks taken on it use the configured lease."""
    from services.platform.locks import configure_lease
    from services.platform.redis import get_redis

    settings = get_settings()
    configure_lease(settings.lock_lease_seconds)
    return get_redis(settings.redis_url)


def ledger_from_settings(s: Settings, redis: Any) -> Any:
    """A sync ledger (services.platform.ledger.Ledger) on `redis`, configured from the settings."""
    from services.platform.ledger import Ledger
    from services.platform.ledger.policies import with_concurrency

    g = s.ledger
    return Ledger(
        redis,
        policies=with_concurrency(g.concurrency),
        prefix=g.key_prefix,
        backoff_scale=g.backoff_scale,
        time_box_scale=g.time_box_scale,
        grace=g.grace_seconds,
        claim_lease=g.claim_lease_seconds,
        requeue_lease=g.requeue_lease_seconds,
    )


def get_ledger() -> Any:
    """The worker's sync ledger (one per event loop and ledger configuration, on the shared
    Redis client)."""
    s = get_settings()
    name = f"ledger|{s.redis_url}|{s.ledger.model_dump_json()}"
    return _cached(name, lambda settings: ledger_from_settings(settings, get_redis_client()))


def espocrm_from_settings(s: Settings) -> Any:
    """An EspoCRM client for these settings (a new one; steps use get_espocrm())."""
    from services.clients.espocrm import EspoCRMAPI

    e = s.espocrm
    return EspoCRMAPI(
        e.api_base_url,
        e.api_key.get_secret_value(),
        api_secret=e.api_secret.get_secret_value() if e.api_secret else None,
        timeout=e.timeout_seconds,
    )


def xai_from_settings(s: Settings) -> Any:
    """An xAI client for these settings (a new one; steps use get_xai())."""
    from services.clients.xai import XAIAPI

    x = s.xai
    return XAIAPI(x.api_base_url, x.management_base_url, x.api_key.get_secret_value(), x.management_key.get_secret_value())


def advoware_from_settings(s: Settings, redis: Any = None) -> Any:
    """An Advoware client for these settings, caching its token in `redis` when given."""
    from services.clients.advoware.api import AdvowareAPI

    a = s.advoware
    return AdvowareAPI(
        a.api_base_url,
        a.token_url,
        role=a.role,
        product=a.product,
        redis=redis,
        refresh_margin_seconds=a.token_refresh_margin_seconds,
        min_token_refresh_seconds=a.token_min_refresh_seconds,
        timeout=a.timeout_seconds,
        **advoware_login(s),
    )


def advoware_login(s: Settings) -> AdvowareLogin:
    """The login fields of the Advoware settings, secrets revealed, as the client takes them."""
    a = s.advoware
    return {
        "app_id": a.app_id,
        "api_key_b64": a.api_key.get_secret_value(),
        "kanzlei": a.kanzlei,
        "database": a.database,
        "user": a.user,
        "password": a.password.get_secret_value(),
    }


def google_calendar_from_settings(s: Settings) -> Any:
    """A Google Calendar client: static token in sandbox, service account in production."""
    from services.clients.google_calendar import GoogleCalendarAPI, ServiceAccountTokenProvider, StaticTokenProvider

    g = s.google
    provider: Any
    if g.uses_static_token and g.static_token is not None:
        provider = StaticTokenProvider(g.static_token.get_secret_value())
    else:
        assert g.service_account_file is not None, "config validation guarantees a service account file"
        info = json.loads(g.service_account_file.read_text())
        provider = ServiceAccountTokenProvider(info, (g.scope,), subject=g.delegated_subject, token_url=g.token_url)
    return GoogleCalendarAPI(g.calendar_base_url, token_provider=provider)


def get_espocrm() -> Any:
    return _cached("espocrm", espocrm_from_settings)


def get_xai() -> Any:
    return _cached("xai", xai_from_settings)


def get_advoware() -> Any:
    return _cached("advoware", lambda s: advoware_from_settings(s, redis=get_redis_client()))


def get_google_calendar() -> Any:
    return _cached("google", google_calendar_from_settings)


async def close_all() -> None:
    """Close every client created on the running loop."""
    loop_id = id(asyncio.get_running_loop())
    for key in [k for k in _cache if k[0] == loop_id]:
        client = _cache.pop(key)
        close = getattr(client, "close", None)
        if close is not None:
            await close()
