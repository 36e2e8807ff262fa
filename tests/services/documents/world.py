"""The document sync's services against in-process EspoCRM and xAI simulators and Redis
(`World`; the `world` fixture is in conftest.py), shared by test_sync.py and test_hash.py."""

from __future__ import annotations

import uuid
from typing import Any

from services.clients.espocrm import EspoCRMAPI
from services.clients.retry import RetryPolicy
from services.clients.xai import XAIAPI
from services.documents.collections import CollectionAction, CollectionManager
from services.documents.executor import DocumentSyncService
from services.documents.journal import MemoryJournal
from services.platform.models import EntityType
from services.platform.settings import DEFAULT_XAI_COLLECTION_RULES, XAISettings, _collection_rules
from simulators.runner import RunningApp

API_KEY, XKEY, XMGMT = "espo-key", "xai-key", "xai-mgmt"
RULES = XAISettings(api_base_url="u", management_base_url="u", api_key="k", management_key="k",
                    collection_rules=_collection_rules(DEFAULT_XAI_COLLECTION_RULES))
FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_total=2.0)
RK = EntityType.RAEUMUNGSKLAGE


class World:
    def __init__(
        self, espo: EspoCRMAPI, xai: XAIAPI, redis: Any, espo_run: RunningApp, xai_run: RunningApp, xai_app: Any, espo_app: Any = None
    ) -> None:
        self.espo, self.xai, self.redis = espo, xai, redis
        self.espo_run, self.xai_run, self.xai_app, self.espo_app = espo_run, xai_run, xai_app, espo_app
        self.journal = MemoryJournal()
        self.links = MemoryJournal()  # the link memory, kept across services like Motia state
        self.changes = MemoryJournal()  # the collection manager's change tokens

    def service(self, **kw: Any) -> DocumentSyncService:
        return DocumentSyncService(self.espo, self.xai, RULES, journal=self.journal, links=self.links, changes=self.changes, **kw)

    def clear_calls(self) -> None:
        from simulators.base import STATE_KEY

        for app in (self.espo_app, self.xai_app):
            app[STATE_KEY].requests.clear()

    def calls(self) -> tuple[list[str], list[str]]:
        """`METHOD path` of every API call the EspoCRM and the xAI simulator logged since
        `clear_calls` (the simulators' request logs, not the clients')."""
        from simulators.base import STATE_KEY

        return tuple(  # type: ignore[return-value]
            [f"{r.method} {r.path}" for r in app[STATE_KEY].requests if not r.path.startswith("/_sim")]
            for app in (self.espo_app, self.xai_app)
        )

    def manager(self) -> CollectionManager:
        return CollectionManager(self.espo, self.xai, RULES, changes=self.changes)

    def xai_requests(self) -> list[Any]:
        from simulators.base import STATE_KEY

        return list(self.xai_app[STATE_KEY].requests)

    def uploads(self) -> int:
        return sum(1 for r in self.xai_requests() if r.method == "POST" and r.path == "/v1/files" and r.status == 200)

    async def rk_with_collection(self) -> tuple[str, str]:
        rk = await self.espo.create_entity("Raeumungsklage", {"name": f"RK {uuid.uuid4().hex[:8]}", "status": "Offen"})
        res = await self.manager().ensure(RK, rk["id"])
        assert res.action == CollectionAction.CREATE and res.collection_id
        return rk["id"], res.collection_id

    async def new_doc(self, content: bytes, **links: Any) -> str:
        att = await self.espo.upload_attachment("f.txt", content, "text/plain", "CDokumente", "file")
        d = await self.espo.create_entity("CDokumente", {"name": f"d-{uuid.uuid4().hex[:6]}", "fileId": att["id"], **links})
        return str(d["id"])
