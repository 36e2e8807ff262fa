"""The `world` fixture: EspoCRM and xAI simulators in this process, their clients and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.clients.espocrm import EspoCRMAPI
from services.clients.xai import XAIAPI
from services.platform.redis import get_redis
from simulators import espocrm as espo_sim
from simulators import xai as xai_sim
from simulators.runner import start_app
from tests.services.documents.world import API_KEY, FAST, XKEY, XMGMT, World


@pytest.fixture
async def world(redis_url: str) -> AsyncIterator[World]:
    espo_app = espo_sim.create_app(API_KEY)
    xai_app = xai_sim.create_app(XKEY, XMGMT, processing_delay=0.0)
    espo_run = await start_app(espo_app, "127.0.0.1", 0)
    xai_run = await start_app(xai_app, "127.0.0.1", 0)
    espo = EspoCRMAPI(f"{espo_run.url}/api/v1", API_KEY, retry_policy=FAST)
    xai = XAIAPI(xai_run.url, xai_run.url, XKEY, XMGMT, retry_policy=FAST)
    yield World(espo, xai, get_redis(redis_url), espo_run, xai_run, xai_app, espo_app)
    await espo.close()
    await xai.close()
    await espo_run.stop()
    await xai_run.stop()
