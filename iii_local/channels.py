"""Streaming channels: the request and response bodies of HTTP triggers.

A channel is a bounded queue of items (text control messages, binary chunks) with an
id and an access key. The worker attaches to one end over `/ws/channels/{id}?key=&dir=`;
the engine holds the other end. `None` in the queue marks the end of the stream.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Union

Item = Union[str, bytes, None]


@dataclass
class Channel:
    id: str
    key: str
    queue: "asyncio.Queue[Item]" = field(default_factory=lambda: asyncio.Queue(maxsize=64))
    closed: bool = False
    attached: asyncio.Event = field(default_factory=asyncio.Event)

    def ref(self, direction: str) -> dict[str, Any]:
        return {"channel_id": self.id, "access_key": self.key, "direction": direction}

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.queue.put(None)

    def close_nowait(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.queue.put_nowait(None)
            except asyncio.QueueFull:
                pass


class ChannelManager:
    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}

    def create(self, maxsize: int = 64) -> Channel:
        ch = Channel(id=uuid.uuid4().hex, key=secrets.token_urlsafe(24), queue=asyncio.Queue(maxsize=maxsize))
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
            ch.close_nowait()
