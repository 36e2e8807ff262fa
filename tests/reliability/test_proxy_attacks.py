"""The proxy's unit attack corpus, sent through the full stack (engine, worker, Advoware
simulator) both as the engine decodes it once and percent-encoded once more: every request
is refused with 400 before anything reaches Advoware, for every method."""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import quote

import aiohttp
from yarl import URL

from iii_local.testing import MotiaTester
from simulators.sandbox import Simulators
from tests.e2e import PROXY_TOKEN
from tests.services.test_advoware_proxy import ATTACKS

AUTH = {"Authorization": f"Bearer {PROXY_TOKEN}"}


async def test_unit_attack_corpus_through_the_full_stack(stack: MotiaTester, sims: Simulators) -> None:
    started = time.time()
    queries = [f"endpoint={quote(raw, safe='')}" for raw in ATTACKS] + [f"endpoint={quote(quote(raw, safe=''), safe='')}" for raw in ATTACKS]
    sem = asyncio.Semaphore(16)

    async def one(session: aiohttp.ClientSession, method: str, q: str) -> tuple[str, str, int]:
        async with sem:
            async with session.request(method, URL(f"{stack.base_url}/advoware/proxy?{q}", encoded=True), headers=AUTH) as r:
                await r.read()
                return method, q, r.status

    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(one(session, m, q) for q in queries for m in ("GET", "POST", "PUT", "DELETE")))
        bad = [(m, q[:80], s) for m, q, s in results if s != 400]
        assert not bad, f"{len(bad)} attack(s) not refused with 400, e.g. {bad[:5]}"
        async with session.get(f"{sims.advoware.url}/_sim/requests") as r:
            log = await r.json()
    # Background cron jobs (calendar, parties) may call these while the test runs; no attack targets them.
    background = re.compile(r"^/api/v1/(Token|advonet/(TermineActiveSync|Mitarbeiter|Beteiligte)(/\d+(/Bankverbindungen(/\d+)?)?)?)$")
    reached = [x for x in log if x["ts"] >= started and not background.match(x["path"])]
    assert not reached, f"an attack reached Advoware: {reached[:3]}"
