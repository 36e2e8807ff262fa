"""GET /ops/ and GET /ops/assets/:name: the operators' page (services.ops.page), served by the
project itself so it works alike on the real engine and the stand-in. The answer goes through
the response channel (src.glue.http.send_answer): a returned body would reach the browser
JSON-encoded and without its headers on engine 0.8.3 (row H3). The page holds no data; its
script signs in with the ops token and reads the JSON API (/ops/search, /ops/entities, ...).
`GET /ops` redirects to `/ops/`."""

from motia import http

from services.ops.page import ASSETS_PREFIX, PAGE_PATH, asset, page, redirect_to_page
from services.platform.logging import get_service_logger
from src.glue.http import send_answer
from src.glue.ops import path_param
from src.glue.steps import step_config

config = step_config("Ops Page", "Operators: the page at /ops/ (search, entity view, ledger, drift audit)", "system",
                     [http("GET", "/ops"), http("GET", PAGE_PATH), http("GET", ASSETS_PREFIX + ":name")], [])


async def handler(request, ctx):
    path = ctx.trigger.path
    if path == PAGE_PATH:
        answer = page()
    elif path.startswith(ASSETS_PREFIX):
        answer = asset(path_param(request, "name"))
    else:
        answer = redirect_to_page()
    return await send_answer(request, answer.status, answer.headers, answer.body, get_service_logger("ops_page", ctx), "ops page")
