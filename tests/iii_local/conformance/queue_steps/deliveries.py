"""What the conformance queue steps did, in a JSON-lines file outside the engine.

The file is `$CONFORMANCE_LOG` (the tester passes it to the engine, which passes its
environment to the worker). Each handler run appends one line; the tests read them back.
Nothing here depends on the engine's state module, so a killed engine cannot take the
record with it. `wait_released(key)` blocks a handler until the test creates
`$CONFORMANCE_LOG.release.<key>`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any


def log_path() -> Path:
    return Path(os.environ["CONFORMANCE_LOG"])


def record(event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, "t": time.time(), "engine": os.environ.get("CONFORMANCE_ENGINE", ""), **fields})
    with open(log_path(), "a", encoding="utf-8") as f:  # one short append per line: never interleaved
        f.write(line + "\n")


def release_path(log: Path, key: str) -> Path:
    return log.with_name(f"{log.name}.release.{key}")


async def wait_released(key: str, poll: float = 0.05) -> None:
    path = release_path(log_path(), key)
    while not path.exists():
        await asyncio.sleep(poll)


def read(log: Path, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
    """The recorded lines (of one event, with the given field values), in file order."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if (event is None or rec["event"] == event) and all(rec.get(k) == v for k, v in match.items()):
            out.append(rec)
    return out
