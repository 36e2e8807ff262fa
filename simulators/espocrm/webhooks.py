"""EspoCRM simulator: the outgoing webhook queue (batching, signing, retries, 410 handling)."""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from simulators.espocrm.model import (
    RETRY_STATUSES,
    generate_id,
    generate_secret,
    now_str,
)
from simulators.espocrm.signing import (
    MAX_BATCH_SIZE,
    WebhookEvent,
    legacy_signature,
    php_json_encode,
    sign_body,
)


@dataclass
class Webhook:
    id: str
    event: str
    url: str
    secret_key: str
    is_active: bool = True
    created_at: str = field(default_factory=now_str)

    def public(self) -> dict[str, Any]:
        parsed = WebhookEvent.parse(self.event)
        return {
            "id": self.id,
            "event": self.event,
            "url": self.url,
            "secretKey": self.secret_key,
            "isActive": self.is_active,
            "entityType": parsed.entity_type,
            "type": parsed.action.value,
            "field": parsed.field,
            "createdAt": self.created_at,
            "modifiedAt": self.created_at,
        }


@dataclass
class QueueItem:
    seq: int
    webhook_id: str
    event: str
    data: dict[str, Any]
    enqueued: float
    due: float
    attempts: int = 0


class WebhookDispatcher:
    """EspoCRM's webhook queue, in memory: batching, signing, retries, 410 handling."""

    def __init__(
        self,
        *,
        debounce: float = 0.05,
        batch_size: int = MAX_BATCH_SIZE,
        max_attempts: int = 4,
        retry_interval: float = 2.0,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.debounce = debounce
        self.max_wait = max(1.0, 10 * debounce)
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.retry_interval = retry_interval
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self.webhooks: dict[str, Webhook] = {}
        self.queue: list[QueueItem] = []
        self.deliveries: list[dict[str, Any]] = []
        self._seq = itertools.count(1)
        self._inflight: set[str] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sends: set[asyncio.Task[None]] = set()

    # registry
    def register(self, event: str, url: str, *, webhook_id: str | None = None, secret_key: str | None = None) -> Webhook:
        WebhookEvent.parse(event)  # raises ValueError
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"Webhook url must be http(s): {url!r}")
        hook = Webhook(id=webhook_id or generate_id(), event=event, url=url, secret_key=secret_key or generate_secret())
        self.webhooks[hook.id] = hook
        return hook

    def remove(self, webhook_id: str) -> bool:
        found = self.webhooks.pop(webhook_id, None) is not None
        self.queue = [i for i in self.queue if i.webhook_id != webhook_id]
        return found

    def has_event(self, event: str) -> bool:
        return any(h.is_active and h.event == event for h in self.webhooks.values())

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Queue one item for every active webhook of `event`."""
        now = self._now()
        for hook in self.webhooks.values():
            if hook.is_active and hook.event == event:
                self.queue.append(QueueItem(next(self._seq), hook.id, event, dict(data), now, now))
        self._poke()

    def reset(self) -> None:
        self.webhooks.clear()
        self.queue.clear()
        self.deliveries.clear()
        self._poke()

    def pending(self) -> int:
        return len(self.queue)

    # lifecycle
    @staticmethod
    def _now() -> float:
        return time.monotonic()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._session = aiohttp.ClientSession(timeout=self.timeout)
        self._task = asyncio.create_task(self._run(), name="espocrm-webhook-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for task in list(self._sends):
            task.cancel()
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._task = None
        self._session = None

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; False on timeout."""
        deadline = self._now() + timeout
        while self.queue or self._inflight:
            if self._now() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def _ready(self, items: list[QueueItem], now: float) -> tuple[list[QueueItem], float | None]:
        """The items of one webhook to send now, else when to look again.

        Fresh items wait for a quiet period of `debounce` (at most `max_wait` after the
        oldest, or until a full batch is there); retried items go as soon as they are due.
        """
        due = [i for i in items if i.due <= now]
        if any(i.attempts for i in due):
            return due[: self.batch_size], None
        if due:
            newest = max(i.enqueued for i in due)
            oldest = min(i.enqueued for i in due)
            if len(due) >= self.batch_size or now >= newest + self.debounce or now >= oldest + self.max_wait:
                return due[: self.batch_size], None
            return [], min(newest + self.debounce, oldest + self.max_wait)
        return [], min(i.due for i in items)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            now = self._now()
            next_due: float | None = None
            for webhook_id in list(dict.fromkeys(i.webhook_id for i in self.queue)):
                if webhook_id in self._inflight:
                    continue
                hook = self.webhooks.get(webhook_id)
                if hook is None:
                    self.queue = [i for i in self.queue if i.webhook_id != webhook_id]
                    continue
                batch, wake_at = self._ready([i for i in self.queue if i.webhook_id == webhook_id], now)
                if batch:
                    self._inflight.add(webhook_id)
                    task = asyncio.create_task(self._send(hook, batch))
                    self._sends.add(task)
                    task.add_done_callback(self._sends.discard)
                elif wake_at is not None:
                    next_due = wake_at if next_due is None else min(next_due, wake_at)
            timeout = None if next_due is None else max(0.0, next_due - now)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _send(self, hook: Webhook, items: list[QueueItem]) -> None:
        try:
            body = php_json_encode([i.data for i in items])
            headers = {
                "Content-Type": "application/json",
                "Signature": sign_body(hook.id, hook.secret_key, body),
                "X-Signature": legacy_signature(hook.id, hook.secret_key, body),
            }
            code, error = 0, None
            assert self._session is not None
            try:
                async with self._session.post(hook.url, data=body, headers=headers) as resp:
                    code = resp.status
                    await resp.read()
            except TimeoutError:
                code, error = 408, "timeout"
            except (aiohttp.ClientError, OSError) as exc:
                code, error = 0, f"{type(exc).__name__}: {exc}"
            self._settle(hook, items, code, error, body)
        finally:
            self._inflight.discard(hook.id)
            self._poke()

    def _settle(self, hook: Webhook, items: list[QueueItem], code: int, error: str | None, body: bytes) -> None:
        live = [i for i in items if i in self.queue]
        attempt = max((i.attempts for i in live), default=0) + 1
        if 200 <= code < 400:
            outcome = "success"
            self._drop(live)
        elif code == 410:
            outcome = "webhook_deleted"
            self.remove(hook.id)
        elif code in RETRY_STATUSES:
            outcome = "retry"
            for item in live:
                item.attempts += 1
                item.due = self._now() + self.retry_interval
            exhausted = [i for i in live if i.attempts >= self.max_attempts]
            if exhausted:
                outcome = "failed"
                self._drop(exhausted)
        else:
            outcome = "failed"
            self._drop(live)
        self.deliveries.append(
            {
                "webhookId": hook.id,
                "event": hook.event,
                "url": hook.url,
                "attempt": attempt,
                "status": code,
                "error": error,
                "outcome": outcome,
                "items": len(items),
                "body": body.decode("ascii"),
                "ts": time.time(),
            }
        )

    def _drop(self, items: list[QueueItem]) -> None:
        ids = {id(i) for i in items}
        self.queue = [i for i in self.queue if id(i) not in ids]


