"""Streaming channels: the request and response bodies of HTTP triggers.

A channel is a bounded buffer of items (text control messages, binary chunks) with an
id and an access key. The worker attaches to one end over `/ws/channels/{id}?key=&dir=`;
the engine holds the other end. Each end has one reader and one writer: `put` waits while
`maxsize` items are buffered (backpressure), `get` returns `None` once the stream has
ended and is drained (several readers or writers are allowed, though the protocol attaches
one of each). A removed channel (`discard`) swallows whatever still arrives.
`listener`, when set, is called on every new item and at the end, so the REST module can
wait for "an item, the invocation's result or the deadline" with a single future.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

Item = str | bytes | None

EMPTY: Any = object()  # get_nowait: nothing buffered yet, stream not ended
TIMEOUT: Any = object()  # get(until=...): the time ran out


class Channel:
    __slots__ = ("id", "key", "maxsize", "items", "closed", "discarded", "attached", "listener", "_getters", "_putters")

    def __init__(self, id: str, key: str, maxsize: int = 64) -> None:
        self.id = id
        self.key = key
        self.maxsize = maxsize
        self.items: deque[str | bytes] = deque()
        self.closed = False  # the end of the stream was marked (no more items)
        self.discarded = False  # removed from the manager: items are dropped
        self.attached = False  # a worker connected to it
        self.listener: Callable[[], None] | None = None
        self._getters: list[asyncio.Future[Any]] = []
        self._putters: list[asyncio.Future[None]] = []

    def ref(self, direction: str) -> dict[str, Any]:
        return {"channel_id": self.id, "access_key": self.key, "direction": direction}

    # -------------------------------------------------------------- writer side

    def _wake_reader(self) -> None:
        if self._getters:
            for g in self._getters:
                if not g.done():
                    g.set_result(False)
        if self.listener is not None:
            self.listener()

    def put_nowait(self, item: str | bytes) -> None:
        """Append without waiting for room (for data already held in memory)."""
        if self.closed or self.discarded:
            return
        self.items.append(item)
        self._wake_reader()

    async def put(self, item: str | bytes) -> None:
        while len(self.items) >= self.maxsize and not (self.closed or self.discarded):
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._putters.append(fut)
            try:
                await fut
            finally:
                self._putters.remove(fut)
        self.put_nowait(item)

    def close_nowait(self) -> None:
        """Mark the end of the stream (items already buffered are still read)."""
        if not self.closed:
            self.closed = True
            self._wake_writer()
            self._wake_reader()

    async def close(self) -> None:
        self.close_nowait()

    def discard(self) -> None:
        self.discarded = True
        self.close_nowait()

    # -------------------------------------------------------------- reader side

    def _wake_writer(self) -> None:
        for p in self._putters:
            if not p.done():
                p.set_result(None)

    def get_nowait(self) -> Any:
        """The next item, `None` at the end of the stream, or `EMPTY`."""
        if self.items:
            item = self.items.popleft()
            if self._putters:
                self._wake_writer()
            return item
        return None if self.closed else EMPTY

    async def get(self, until: float | None = None) -> Any:
        """The next item or `None` at the end; `TIMEOUT` when `until` (loop time) passes first."""
        while True:
            item = self.get_nowait()
            if item is not EMPTY:
                return item
            loop = asyncio.get_running_loop()
            if until is not None and loop.time() >= until:
                return TIMEOUT
            fut = loop.create_future()
            self._getters.append(fut)
            timer = loop.call_at(until, _expire, fut) if until is not None else None
            try:
                timed_out = await fut
            finally:
                self._getters.remove(fut)
                if timer is not None:
                    timer.cancel()
            if timed_out:
                item = self.get_nowait()
                return TIMEOUT if item is EMPTY else item


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(True)


class ChannelManager:
    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}

    def create(self, maxsize: int = 64) -> Channel:
        ch = Channel(uuid.uuid4().hex, secrets.token_urlsafe(24), maxsize)
        self.channels[ch.id] = ch
        return ch

    def get(self, channel_id: str, key: str) -> Channel | None:
        ch = self.channels.get(channel_id)
        if ch is None or not secrets.compare_digest(ch.key, key):
            return None
        return ch

    def remove(self, channel_id: str) -> None:
        ch = self.channels.pop(channel_id, None)
        if ch is not None:
            ch.discard()
