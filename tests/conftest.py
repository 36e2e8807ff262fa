"""Shared fixtures: a private Redis server for the whole test session (restartable, for the
reliability tests), and the end-to-end stack from tests/e2e.py."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from simulators.runner import free_port
from tests.processes import stop_process


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `last` run after all others (they inspect what the session produced)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


class RedisServer:
    """Debian's redis-server on a free loopback port, no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run `make test` (it installs it) or apt-get install redis-server")
        self.binary = binary
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="redis-test-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.time() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.time() > deadline:
                    self.proc.kill()
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, grace=5, kill=kill)
        self.proc = None

    def restart(self, *, down_for: float = 0.0) -> None:
        """Kill the server (all data gone: locks, cached tokens) and start it again."""
        self.stop(kill=True)
        time.sleep(down_for)
        self.start()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's private redis-server."""
    return redis_server.url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session for tests that talk to a simulator or the engine."""
    async with aiohttp.ClientSession() as session:
        yield session


from tests.e2e import sims, sims_reset, stack, stack_and_sims  # noqa: E402,F401  (end-to-end fixtures)
