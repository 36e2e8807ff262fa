"""All four simulators at once, configured from the project's settings.

Used by `python -m simulators` (the sandbox of `make run`) and by the end-to-end tests.
In the sandbox, the EspoCRM simulator is wired like a real EspoCRM would be: its
outgoing webhooks post to our webhook endpoints on the engine, signed with the secrets
from ESPOCRM_WEBHOOK_SECRETS when set (else unsigned, for the open/token modes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from services.platform.settings import Settings
from simulators import advoware, espocrm, google_calendar, xai
from simulators.runner import RunningApp, start_app

SEED_DIR = Path(__file__).with_name("seed")

# EspoCRM webhook events → our endpoints (the documented contract, see README "Webhooks").
WEBHOOK_ROUTES: list[tuple[str, str]] = [
    ("CDokumente.create", "/vmh/webhook/document/create"),
    ("CDokumente.update", "/vmh/webhook/document/update"),
    ("CDokumente.delete", "/vmh/webhook/document/delete"),
    ("CDokumente.link", "/vmh/webhook/entity/link"),
    ("CDokumente.unlink", "/vmh/webhook/entity/unlink"),
    ("CBeteiligte.create", "/vmh/webhook/beteiligte/create"),
    ("CBeteiligte.update", "/vmh/webhook/beteiligte/update"),
    ("CBeteiligte.delete", "/vmh/webhook/beteiligte/delete"),
    ("CBankverbindungen.create", "/vmh/webhook/bankverbindungen/create"),
    ("CBankverbindungen.update", "/vmh/webhook/bankverbindungen/update"),
    ("CBankverbindungen.delete", "/vmh/webhook/bankverbindungen/delete"),
]


@dataclass
class Simulators:
    espocrm: RunningApp
    advoware: RunningApp
    xai: RunningApp
    google: RunningApp
    espocrm_app: web.Application
    advoware_app: web.Application
    xai_app: web.Application
    google_app: web.Application

    async def stop(self) -> None:
        for r in (self.espocrm, self.advoware, self.xai, self.google):
            await r.stop()

    def env(self) -> dict[str, str]:
        """Environment that points the project's clients at these simulators."""
        return {
            "ESPOCRM_API_BASE_URL": f"{self.espocrm.url}/api/v1",
            "ADVOWARE_API_BASE_URL": f"{self.advoware.url}/",
            "ADVOWARE_TOKEN_URL": f"{self.advoware.url}/api/v1/Token",
            "XAI_API_BASE_URL": self.xai.url,
            "XAI_MANAGEMENT_BASE_URL": self.xai.url,
            "GOOGLE_CALENDAR_BASE_URL": f"{self.google.url}/calendar/v3",
            "GOOGLE_TOKEN_URL": f"{self.google.url}/token",
        }


def webhook_specs(engine_url: str, secrets: dict[str, str]) -> list[dict[str, Any]]:
    """Seed entries registering our endpoints as EspoCRM outgoing webhooks.

    EspoCRM gives every webhook its own id and secret. With secrets configured, the i-th
    route uses the i-th configured `id:secret`; when fewer are configured, the first one's
    id gets a suffix `-i` with the first secret (so configure `id-1`, `id-2`, ... too).
    Without secrets the webhooks are unsigned (token or open mode).
    """
    specs = []
    items = list(secrets.items())
    for i, (event, path) in enumerate(WEBHOOK_ROUTES):
        spec: dict[str, Any] = {"event": event, "url": engine_url.rstrip("/") + path}
        if items:
            if i < len(items):
                hook_id, secret = items[i]
            else:
                hook_id, secret = f"{items[0][0]}-{i}", items[0][1]
            spec["id"] = hook_id
            spec["secretKey"] = secret
        specs.append(spec)
    return specs


async def start_simulators(
    settings: Settings,
    *,
    demo: bool = True,
    engine_url: str | None = None,
    host: str = "127.0.0.1",
    use_configured_ports: bool = True,
    webhook_retry_interval: float = 2.0,
) -> Simulators:
    """Start the four simulators with the sandbox credentials from `settings`."""
    e, a, x, g = settings.espocrm, settings.advoware, settings.xai, settings.google
    sim_ports = settings.simulators

    espo_seed: dict[str, Any] = espocrm.load_seed_file() if demo else {}
    if engine_url:
        secrets = {k: v.get_secret_value() for k, v in e.webhook_secrets.items()}
        espo_seed = {**espo_seed, "webhooks": [*espo_seed.get("webhooks", []), *webhook_specs(engine_url, secrets)]}
    espo_app = espocrm.create_app(
        e.api_key.get_secret_value(),
        e.api_secret.get_secret_value() if e.api_secret else None,
        seed=espo_seed or None,
        webhook_retry_interval=webhook_retry_interval,
    )
    advo_app = advoware.create_app(
        a.api_key.get_secret_value(),
        a.app_id,
        a.kanzlei,
        a.database,
        a.user,
        a.password.get_secret_value(),
        seed=advoware.load_demo_seed() if demo else None,
        role=a.role,
        product=a.product,
    )
    xai_app = xai.create_app(x.api_key.get_secret_value(), x.management_key.get_secret_value())
    tokens = {g.static_token.get_secret_value()} if g.static_token else set()
    google_app = google_calendar.create_app(tokens, seed=(SEED_DIR / "google_demo.json") if demo else None)

    def port(p: int) -> int:
        return p if use_configured_ports else 0

    return Simulators(
        espocrm=await start_app(espo_app, host, port(sim_ports.espocrm_port)),
        advoware=await start_app(advo_app, host, port(sim_ports.advoware_port)),
        xai=await start_app(xai_app, host, port(sim_ports.xai_port)),
        google=await start_app(google_app, host, port(sim_ports.google_port)),
        espocrm_app=espo_app,
        advoware_app=advo_app,
        xai_app=xai_app,
        google_app=google_app,
    )
