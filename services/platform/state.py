"""The engine's state store as the service layer sees it (`ctx.state` API: `get/set/delete/list`
by scope and key). Declared once here; each sync names the narrowest protocol it needs."""

from __future__ import annotations

from typing import Any, Protocol


class ReadWriteState(Protocol):
    """Reads and writes one value per (scope, key); the calendar sync needs no more."""

    async def get(self, scope: str, key: str) -> Any: ...

    async def set(self, scope: str, key: str, value: Any) -> Any: ...


class StateStore(ReadWriteState, Protocol):
    """The whole store: also deletes a key and lists a scope's values."""

    async def delete(self, scope: str, key: str) -> Any: ...

    async def list(self, scope: str) -> list[Any]: ...


__all__ = ["ReadWriteState", "StateStore"]
