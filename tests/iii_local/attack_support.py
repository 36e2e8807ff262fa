"""Helpers for the attacks on the stand-in engine (tests/security/test_engine_*, test_console_*):
a fake worker speaking the raw worker protocol, the addresses a port listens on, this host's
non-loopback address, and raw HTTP requests written byte by byte."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a TCP socket listening on `port` (/proc/net/tcp)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if int(p, 16) == port and state == "0A":
            out.add(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return out


def lan_address() -> str | None:
    """This host's address on its default route (not loopback), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        except OSError:
            return None
        addr = str(s.getsockname()[0])
    return None if addr.startswith("127.") else addr


class FakeWorker:
    """A client on the worker port that speaks the protocol by hand (what an attacker runs)."""

    def __init__(self, port: int, *, host: str = "127.0.0.1", headers: dict[str, str] | None = None,
                 local_addr: str | None = None) -> None:
        self.url = f"ws://{host}:{port}/"
        self.headers = headers or {}
        self.local_addr = local_addr
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.worker_id = ""
        self.received: list[dict[str, Any]] = []

    async def __aenter__(self) -> FakeWorker:
        connector = aiohttp.TCPConnector(local_addr=(self.local_addr, 0)) if self.local_addr else None
        self.session = aiohttp.ClientSession(connector=connector)
        try:
            self.ws = await self.session.ws_connect(self.url, headers=self.headers)
            hello = json.loads((await self.ws.receive(timeout=5)).data)
        except BaseException:
            await self.session.close()
            raise
        assert hello["type"] == "workerregistered", hello
        self.worker_id = hello["worker_id"]
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()

    async def send(self, msg: dict[str, Any] | str) -> None:
        assert self.ws is not None
        await self.ws.send_str(msg if isinstance(msg, str) else json.dumps(msg))

    async def register_function(self, fid: str, description: str | None = None) -> None:
        await self.send({"type": "registerfunction", "id": fid, "description": description})

    async def register_http(self, fid: str, method: str, path: str, trigger_id: str | None = None) -> None:
        await self.send({"type": "registertrigger", "id": trigger_id or str(uuid.uuid4()), "trigger_type": "http",
                         "function_id": fid, "config": {"api_path": path, "http_method": method}})

    async def call(self, function_id: str, data: Any = None, timeout: float = 5.0) -> Any:
        """Invoke an engine function and wait for its answer: every message sent before it has
        been handled by then (the engine reads a socket in order)."""
        assert self.ws is not None
        inv = str(uuid.uuid4())
        await self.send({"type": "invokefunction", "invocation_id": inv, "function_id": function_id, "data": data})
        while True:
            frame = await self.ws.receive(timeout=timeout)
            assert frame.type == aiohttp.WSMsgType.TEXT, f"the engine ended the connection: {frame.type.name}"
            msg = json.loads(frame.data)
            if msg.get("type") == "invocationresult" and msg.get("invocation_id") == inv:
                return msg.get("result")
            self.received.append(msg)

    async def drain(self, seconds: float) -> list[dict[str, Any]]:
        """Every message the engine sent within `seconds` (invocations meant for a takeover)."""
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await self.ws.receive(timeout=left)
            except TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            self.received.append(json.loads(msg.data))
        return self.received


async def raw_exchange(port: int, request: bytes, *, host: str = "127.0.0.1", timeout: float = 10.0) -> bytes:
    """Send `request` as is and return the head of the answer (status line and headers)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
