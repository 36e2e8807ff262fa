"""Shared helpers for the benchmarks: load generation and percentile maths."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def machine() -> str:
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


async def _timed(send: Callable[[], Awaitable[int]], latencies: list[float]) -> int:
    """One request: its latency (ms) appended to `latencies`, its HTTP status returned."""
    t0 = time.perf_counter()
    status = await send()
    latencies.append((time.perf_counter() - t0) * 1000)
    return status


async def closed_loop(send: Callable[[], Awaitable[int]], total: int, concurrency: int) -> dict[str, Any]:
    """`concurrency` clients each sending back-to-back until `total` requests are done."""
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def client() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            if await _timed(send, latencies) >= 400:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"requests": total, "rps": total / elapsed, "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "errors": errors}


async def open_loop(send: Callable[[], Awaitable[int]], rate: float, seconds: float) -> dict[str, Any]:
    """Send at a fixed rate regardless of answers (latency under a given load)."""
    latencies: list[float] = []
    errors = 0
    tasks = []

    async def one() -> None:
        nonlocal errors
        if await _timed(send, latencies) >= 400:
            errors += 1

    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return {"rate": rate, "requests": n, "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "mean_ms": statistics.fmean(latencies) if latencies else 0, "errors": errors}


def emit(name: str, figures: dict[str, Any]) -> None:
    """Print figures for people and one JSON line for bench/run_all.py."""
    print(f"\n== {name} ==")
    for k, v in figures.items():
        print(f"  {k:32} {v:.3f}" if isinstance(v, float) else f"  {k:32} {v}")
    print("BENCH-JSON " + json.dumps({"bench": name, **figures}), flush=True)


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=30))
