"""The console page in headless Chromium against the engine running the compat step set."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from tests.console.conftest import ConsoleTester, applied, emit_until_a_handles

TIMEOUT = 15_000  # ms, for Playwright waits


async def open_view(page: Any, engine: ConsoleTester, view: str) -> None:
    await page.goto(f"{engine.console_url}/#/{view}")
    await page.wait_for_function(f"() => document.body.dataset.loaded === {json.dumps(view.split('/')[0])}", timeout=TIMEOUT)


async def test_flows_graph_shows_webhook_topic_handler(page: Any, engine: ConsoleTester, screenshot_dir: Path) -> None:
    await open_view(page, engine, "flows")
    flow = page.locator('.flow[data-flow="compat"]')
    await flow.wait_for(timeout=TIMEOUT)
    graph = flow.locator('svg[data-testid="flow-graph"]')
    assert await graph.locator('g.node.http[data-node="h:POST /compat/emit"]').count() == 1
    assert await graph.locator('g.node.topic[data-node="t:compat.fanout"]').count() == 1
    assert await graph.locator('g.node.step[data-node="s:Compat Fanout A"]').count() == 1
    assert await graph.locator('g.node.cron[data-node="c:Compat Cron:* * * * * *"]').count() == 1
    assert await graph.locator("path.edge").count() >= 7 + 3 + 4 + 1  # webhooks, enqueues, subscriptions, cron
    # Columns by depth: webhook → Compat Api → topic → subscriber.
    xs = {}
    for node in ("h:POST /compat/emit", "s:Compat Api", "t:compat.fanout", "s:Compat Fanout A"):
        box = await graph.locator(f'g.node[data-node="{node}"]').bounding_box()
        xs[node] = box["x"]
    assert xs["h:POST /compat/emit"] < xs["s:Compat Api"] < xs["t:compat.fanout"] < xs["s:Compat Fanout A"]
    card = flow.locator('.step-card[data-step="Compat Api"]')
    text = await card.inner_text()
    assert "POST /compat/emit" in text and "compat.flaky" in text
    await page.screenshot(path=str(screenshot_dir / "flows.png"), full_page=True)


async def test_trace_of_a_request_with_its_handlers_and_logs(page: Any, engine: ConsoleTester, screenshot_dir: Path) -> None:
    n, trace_id = await emit_until_a_handles(engine, uuid.uuid4().int % 10**6)
    await engine.logs(trace_id, wait_for="fanout A got")

    assert (await engine.get("/compat/error")).status == 500
    assert (await engine.post("/compat/echo/42", {"hello": "console"})).status == 201
    await engine.wait_idle()

    await open_view(page, engine, "traces")
    await page.fill('[data-testid="filter-step"]', "Compat Api")
    await applied(page, "limit=100&step=Compat+Api")
    row = page.locator(f'tr[data-key="{trace_id}"]')
    await row.wait_for(timeout=TIMEOUT)
    await page.locator("#traces-body tr[data-key]", has_text="error").first.wait_for(timeout=TIMEOUT)
    await page.screenshot(path=str(screenshot_dir / "traces.png"), full_page=True)
    await page.fill('[data-testid="filter-step"]', "Compat Fanout A")
    await applied(page, "limit=100&step=Compat+Fanout+A")
    # The filter is applied by the server: cron traces are gone from the list.
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#traces-body tr[data-key]')].every(r => r.textContent.includes('Compat Fanout'))", timeout=TIMEOUT
    )
    await row.click()
    await page.wait_for_function(f"() => document.querySelector('[data-testid=trace-id]')?.textContent === '{trace_id}'", timeout=TIMEOUT)
    timeline = page.locator('[data-testid="timeline"]')
    assert await timeline.locator('[data-testid="invocation"]').count() == 2  # the subscribers compete: one handler
    text = await timeline.inner_text()
    assert "Compat Api · POST /compat/emit" in text and "Compat Fanout A" in text and "Compat Fanout B" not in text
    assert await timeline.locator('[data-outcome="ok"]').count() == 2
    log_line = page.locator('[data-testid="log-line"]', has_text="fanout A got")
    await log_line.wait_for(timeout=TIMEOUT)
    assert f'"n":{n}' in await log_line.inner_text()  # the structured fields are shown


async def test_dead_letter_is_listed_on_the_page_without_replay(page: Any, engine: ConsoleTester, screenshot_dir: Path) -> None:
    """Dead letters as the engine keeps them (queue:{topic}:dlq): listed, masked, never redriven."""
    key = f"poison-{uuid.uuid4().hex[:8]}"
    r = await engine.post("/compat/emit", {"topic": "compat.flaky", "data": {"key": key, "poison": True}})
    trace_id = r.json()["trace_id"]
    await engine.wait_idle()
    letters = [e for e in await engine.dead_letters("compat.flaky") if e["job"]["data"]["key"] == key]
    assert len(letters) == 1
    job_id = letters[0]["job"]["id"]

    # The failing trace shows every attempt.
    await open_view(page, engine, f"trace/{trace_id}")
    await page.wait_for_function("() => document.querySelectorAll('[data-testid=invocation]').length === 4", timeout=TIMEOUT)
    attempts = await page.locator('[data-testid="invocation"][data-outcome="error"]').evaluate_all("els => els.map(e => e.dataset.attempt)")
    assert attempts == ["1", "2", "3"]
    assert await page.locator('[data-testid="timeline"]', has_text=f"poison message {key}").count() == 1
    await page.screenshot(path=str(screenshot_dir / "trace.png"), full_page=True)

    await open_view(page, engine, "queues")
    entry = page.locator(f'[data-testid="dlq-entry"][data-key="{job_id}"]')
    await entry.wait_for(timeout=TIMEOUT)
    assert f"poison message {key}" in await entry.locator('[data-testid="dlq-error"]').inner_text()
    payload = await entry.locator('[data-testid="dlq-payload"]').inner_text()
    assert '"poison": true' in payload
    assert key not in payload and '"key": "••••' in payload  # payloads are masked like state: a field named *key*
    assert "attempts 3/3" in await entry.inner_text()
    flaky_row = page.locator('#queues-body tr[data-topic="compat.flaky"]')
    assert int(await flaky_row.locator('td[data-col="dead"]').inner_text()) >= 1
    assert "Compat Flaky" in await flaky_row.locator('td[data-col="subscribers"]').inner_text()
    await page.screenshot(path=str(screenshot_dir / "queues.png"), full_page=True)
    # No way to redrive from the page (the engine has none; the project's ledger replays).
    assert await page.locator('[data-testid="replay"], [data-testid="replay-all"]').count() == 0
    assert await page.evaluate("fetch('/_console/dlq/replay', {method: 'POST', headers: {'X-Console-Request': '1'}}).then(r => r.status)") in (404, 405)


async def test_fire_cron_job_from_the_page(page: Any, engine: ConsoleTester, screenshot_dir: Path) -> None:
    await open_view(page, engine, "cron")
    fid = "steps::Compat Cron::trigger::cron(* * * * * *)"
    row = page.locator(f'#cron-body tr[data-key="{fid}"]')
    await row.wait_for(timeout=TIMEOUT)
    assert "* * * * * *" in await row.inner_text()
    await page.wait_for_function(
        f"() => document.querySelector('#cron-body tr[data-key=\"{fid}\"] td[data-col=last_result]')?.textContent.includes('ok')", timeout=TIMEOUT
    )
    await page.screenshot(path=str(screenshot_dir / "cron.png"), full_page=True)
    async with page.expect_response(lambda r: r.url.endswith("/_console/cron/trigger")) as resp_info:
        await row.locator('[data-testid="fire"]').click()
    result = await (await resp_info.value).json()
    assert result["result"] == "ok"
    await page.locator("#toast", has_text=result["trace_id"][:8]).wait_for(timeout=TIMEOUT)
    trace = await engine.trace(result["trace_id"])
    assert trace["invocations"][0]["detail"]["manual"] is True
    assert trace["invocations"][0]["function_id"] == fid


async def test_state_view_masks_secrets(page: Any, engine: ConsoleTester, screenshot_dir: Path) -> None:
    await engine.state_set("console.demo", "google-calendar", {
        "calendar_id": "kanzlei@example.org",
        "access_token": "tok-SECRET-1",
        "nested": {"clientSecret": "SECRET-2", "label": "visible label", "list": [{"password": "SECRET-3", "user": "alice"}]},
        "Authorization": "Bearer SECRET-4",
    })
    await engine.state_set("console.demo", "webhook_signature_key", "SECRET-5")
    await engine.state_set("console.demo", "counter", {"n": 3})

    await open_view(page, engine, "state/console.demo")
    items = page.locator('[data-testid="state-items"]')
    await items.locator('pre[data-key="counter"]').wait_for(timeout=TIMEOUT)
    text = await items.inner_text()
    assert "kanzlei@example.org" in text and "visible label" in text and "alice" in text and '"n": 3' in text
    assert "SECRET" not in text
    assert "••••" in await items.locator('pre[data-key="webhook_signature_key"]').inner_text()
    assert await page.locator('#scopes a.active', has_text="console.demo").count() == 1
    # Not only hidden on screen: the browser never receives the values.
    raw = await page.evaluate("fetch('/_console/state/console.demo').then(r => r.text())")
    assert "SECRET" not in raw and "kanzlei@example.org" in raw
    raw_one = await page.evaluate("fetch('/_console/state/console.demo/google-calendar').then(r => r.text())")
    assert "SECRET" not in raw_one
    await page.screenshot(path=str(screenshot_dir / "state.png"), full_page=True)


async def test_live_updates_without_reload(page: Any, engine: ConsoleTester) -> None:
    await open_view(page, engine, "state/console.live")
    await page.evaluate("window.__marker = 'same page'")
    await engine.state_set("console.live", "ticker", {"v": "first"})
    await page.locator('pre[data-key="ticker"]', has_text="first").wait_for(timeout=TIMEOUT)
    await engine.state_set("console.live", "ticker", {"v": "second"})
    await page.locator('pre[data-key="ticker"]', has_text="second").wait_for(timeout=TIMEOUT)
    assert await page.evaluate("window.__marker") == "same page"


async def test_page_cannot_write_state(engine: ConsoleTester) -> None:
    """The console exposes only reads and a manual cron run; state writes stay on the engine API."""
    assert engine.session is not None
    async with engine.session.put(f"{engine.console_url}/_console/state/x/y", json={"value": 1}, headers={"X-Console-Request": "1"}) as r:
        assert r.status in (404, 405)
    async with engine.session.post(f"{engine.console_url}/_console/dlq/replay", json={"ids": []}, headers={"X-Console-Request": "1"}) as r:
        assert r.status in (404, 405)  # there is no replay
    async with engine.session.post(f"{engine.console_url}/_console/cron/trigger", json={"function_id": "x"}) as r:
        assert r.status == 403  # no X-Console-Request header: a cross-site form cannot trigger it
    await asyncio.sleep(0)
