"""Request bodies, read whole before a request takes a concurrency slot (a stand-in deviation).

The real engine reads a body inside its handler (views.rs 246-289), after axum's
ConcurrencyLimit gave the request a permit: a body that trickles in holds a slot for as long
as it trickles, and a body the client breaks off ends the request channel quietly
(`Err(_) => break`), so the handler gets it cut short as if it were complete. The stand-in
(development and sandbox, issue 14) reads the body of every matched route first:

- within `timeout` (the REST module's `default_timeout` unless `local_engine.body_timeout_ms`
  is set), else 408 and no handler runs; the concurrency slot is taken only afterwards;
- at most `limit` bytes when `local_engine.max_body_bytes` is set (default: no limit, like the
  engine, row H4): a declared `Content-Length` above it is 413 at once, a chunked body is 413
  as soon as it passes it; none of it reaches a handler;
- a body that breaks off (the client goes, a bad chunk, fewer bytes than `Content-Length`)
  is 400 and reaches no handler.

The bytes stay in memory up to `SPOOL_MEMORY`, then go to a temporary file. The handler then
gets what the engine would give it: a JSON body parsed, any other streamed through the
request channel in 64 KiB frames that end with the body.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import aiohttp
import aiohttp.http_exceptions
from aiohttp import web

SPOOL_MEMORY = 1024 * 1024


BodyRefused = web.HTTPClientError
"""The body is not passed on: 400, 408 or 413 (`status`), the reason in `text`."""


@dataclass
class Body:
    """A request body read to its end."""

    size: int = 0
    spool: IO[bytes] = field(default_factory=lambda: tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY))  # noqa: SIM115

    def read_all(self) -> bytes:
        self.spool.seek(0)
        return self.spool.read()

    def chunks(self, size: int) -> Iterator[bytes]:
        self.spool.seek(0)
        while chunk := self.spool.read(size):
            yield chunk

    def close(self) -> None:
        self.spool.close()


async def read_body(request: web.Request, *, limit: int, timeout: float) -> Body:
    """The whole body of `request`, or BodyRefused (see the module docstring)."""
    declared = request.content_length
    if limit and declared is not None and declared > limit:
        raise web.HTTPRequestEntityTooLarge(limit, declared, text=f"request body of {declared} bytes is larger than {limit} bytes")
    body = Body()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                body.size += len(chunk)
                if limit and body.size > limit:
                    raise web.HTTPRequestEntityTooLarge(limit, body.size, text=f"request body is larger than {limit} bytes")
                body.spool.write(chunk)
    except TimeoutError:
        body.close()
        raise web.HTTPRequestTimeout(text=f"request body not complete within {timeout:g} s") from None
    except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError, ConnectionError) as exc:
        body.close()
        if declared is not None:
            raise web.HTTPBadRequest(text=f"request body ended after {body.size} of {declared} bytes") from None
        raise web.HTTPBadRequest(text=f"request body broke off: {type(exc).__name__}") from None
    except BaseException:
        body.close()
        raise
    if declared is not None and body.size != declared:
        body.close()
        raise web.HTTPBadRequest(text=f"request body ended after {body.size} of {declared} bytes")
    return body
