"""What the hypothesis state machines of the sync tests (documents, parties) share: an event
loop of their own for the service's coroutines, and the teardown that checks the end state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine


class AsyncMachine(RuleBasedStateMachine):
    """Drives async code on an event loop of its own, closed at teardown."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.loop.close()

    def teardown_check(self) -> None:
        """The checks on the machine's end state (each machine defines its own)."""
        raise NotImplementedError


class CheckedAtTeardown(AsyncMachine):
    """Put first among a machine's bases: its teardown runs `teardown_check`, then closes the
    machine even when the check fails. Hypothesis runs this one; the tests that drive a machine
    by hand use the plain machine and call `teardown_check` where they want it."""

    def teardown(self) -> None:
        try:
            self.teardown_check()
        finally:
            super().teardown()
