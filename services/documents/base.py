"""What the collection manager and the document sync both hold (framework-free)."""

from __future__ import annotations

from typing import Any

from services.documents.journal import MemoryJournal, SyncJournal
from services.platform.logging import ServiceLogger, get_service_logger


class DocumentServiceBase:
    """The EspoCRM and xAI clients, the xAI settings, the collection manager's change tokens per
    entity (services.documents.links.CHANGES_SCOPE; an in-memory journal when none is given) and a
    service logger named `logger_name`."""

    def __init__(self, espocrm: Any, xai: Any, xai_settings: Any, *, changes: SyncJournal | None, ctx: Any, logger_name: str) -> None:
        self.espocrm = espocrm
        self.xai = xai
        self.xai_settings = xai_settings
        self.changes: SyncJournal = changes if changes is not None else MemoryJournal()
        self.log: ServiceLogger = get_service_logger(logger_name, ctx)
