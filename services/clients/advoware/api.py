"""Advoware's resources as typed calls (external-apis.md §3): appointments (`Termine`),
employees (`Mitarbeiter`), matters (`Akten`), parties (`Beteiligte`) and their bank accounts
(`Bankverbindungen`). Knows nothing of Motia or of the sync rules.

Records come back with the canonical field names of `paths` (`normalize_record`); request
bodies drop read-only fields and format dates as Advoware wants them (`_outgoing`). Advoware's
PUT replaces a whole record, so updates lay the changes over the current record unless
`merge=False`. Creates (POST) are sent once; deletes treat a 404 after a retried attempt as done.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, date, datetime
from datetime import time as dtime
from enum import StrEnum
from typing import Any

from services.clients.advoware import paths as P
from services.clients.advoware.client import AdvowareHttpClient
from services.clients.advoware.responses import SERVICE
from services.clients.errors import ApiError, IntegrationError, NotFoundError, ValidationError

log = logging.getLogger(__name__)


class AdvowareAPI(AdvowareHttpClient):
    """Client of one Advoware installation (Kanzlei + Datenbank + user): the typed calls."""

    @staticmethod
    def _outgoing(data: Mapping[str, Any], fields: type[StrEnum], read_only: frozenset[Any]) -> dict[str, Any]:
        """A request body: canonical field names, read-only fields dropped, dates formatted.

        datetimes must be naive wall-clock values (Advoware's `Datum` carries no zone).
        """
        out: dict[str, Any] = {}
        for key, value in P.normalize_record(data, fields).items():
            if key in read_only:
                continue
            if isinstance(value, datetime):
                if value.tzinfo is not None:
                    raise ValidationError(f"advoware: {key} must be a naive wall-clock datetime, got {value!r}")
                value = P.format_datetime(value)
            elif isinstance(value, date):
                value = P.format_date(value)
            elif isinstance(value, dtime):
                value = value.strftime(P.TIME_FORMAT)
            elif isinstance(value, StrEnum):
                value = value.value
            out[key] = value
        return out

    @staticmethod
    def _records(doc: Any, fields: type[StrEnum]) -> list[dict[str, Any]]:
        if not isinstance(doc, list):
            raise ApiError(SERVICE, 502, f"expected a JSON list, got {type(doc).__name__}")
        return [P.normalize_record(item, fields) for item in doc if isinstance(item, dict)]

    @staticmethod
    def _record(doc: Any, fields: type[StrEnum]) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise ApiError(SERVICE, 502, f"expected a JSON object, got {type(doc).__name__}")
        return P.normalize_record(doc, fields)

    # appointments ------------------------------------------------------------------------
    async def list_appointments(self, kuerzel: str, date_from: date | str, date_to: date | str) -> list[dict[str, Any]]:
        """Appointments of one employee (Anwalt or Sb) overlapping the days `date_from`..`date_to`."""
        q = P.TerminQuery
        params = {
            q.FROM.value: date_from if isinstance(date_from, str) else P.format_date(date_from),
            q.TO.value: date_to if isinstance(date_to, str) else P.format_date(date_to),
            q.KUERZEL.value: kuerzel,
        }
        return self._records(await self._call("GET", P.TERMINE_PATH, params=params), P.TerminField)

    async def get_appointment(self, frnr: int) -> dict[str, Any]:
        doc = await self._call("GET", P.TERMINE_PATH, params={P.TerminQuery.FRNR.value: str(frnr)})
        return self._record(doc, P.TerminField)

    async def create_appointment(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create an appointment (sent once, never retried) and return it with its `FrNr`."""
        body = self._outgoing(data, P.TerminField, P.TERMIN_READ_ONLY)
        doc = await self._call("POST", P.TERMINE_PATH, json_body=body)
        if isinstance(doc, dict):
            return self._record(doc, P.TerminField)
        try:
            frnr = int(doc)  # Advoware answers the new FrNr as a bare number
        except (TypeError, ValueError) as exc:
            raise ApiError(SERVICE, 502, f"create appointment: unexpected answer {doc!r}") from exc
        try:
            return await self.get_appointment(frnr)
        except IntegrationError as exc:
            log.warning("advoware: created appointment %s but could not read it back: %s", frnr, exc)
            return {**body, P.TerminField.FRNR.value: frnr}

    async def update_appointment(self, frnr: int, data: Mapping[str, Any], *, merge: bool = True) -> dict[str, Any]:
        """Update an appointment. Advoware's PUT replaces the whole record, so by default the
        current record is read and `data` laid over it (`merge=False` sends `data` alone)."""
        changes = self._outgoing(data, P.TerminField, P.TERMIN_READ_ONLY)
        if merge:
            current = self._outgoing(await self.get_appointment(frnr), P.TerminField, P.TERMIN_READ_ONLY)
            changes = {**current, **changes}
        body = {P.TerminField.FRNR.value: frnr, **changes}
        doc = await self._call("PUT", P.TERMINE_PATH, params={P.TerminQuery.FRNR.value: str(frnr)}, json_body=body)
        if isinstance(doc, dict):
            return self._record(doc, P.TerminField)
        return await self.get_appointment(frnr)

    async def delete_appointment(self, frnr: int) -> None:
        await self._call(
            "DELETE", P.TERMINE_PATH, params={P.TerminQuery.FRNR.value: str(frnr)}, missing_ok_on_retry=True
        )

    # employees and matters -------------------------------------------------------------
    async def list_employees(self) -> list[dict[str, Any]]:
        return self._records(await self._call("GET", P.MITARBEITER_PATH), P.MitarbeiterField)

    async def list_matters(self, *, page_size: int = P.DEFAULT_PAGE_SIZE) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        skip = 0
        while True:
            params = {P.BeteiligteQuery.SKIP.value: str(skip), P.BeteiligteQuery.TAKE.value: str(page_size)}
            page = self._records(await self._call("GET", P.AKTEN_PATH, params=params), P.AkteField)
            out.extend(page)
            if len(page) < page_size:
                return out
            skip += len(page)

    async def get_matter(self, nr: int) -> dict[str, Any]:
        return self._record(await self._call("GET", P.akte_path(nr)), P.AkteField)

    # parties -----------------------------------------------------------------------------
    async def _party_pages(self, filters: dict[str, str], page_size: int) -> AsyncIterator[list[dict[str, Any]]]:
        q = P.BeteiligteQuery
        skip = 0
        while True:
            params = {**filters, q.SKIP.value: str(skip), q.TAKE.value: str(page_size)}
            page = self._records(await self._call("GET", P.BETEILIGTE_PATH, params=params), P.BeteiligterField)
            if page:
                yield page
            if len(page) < page_size:
                return
            skip += len(page)

    async def list_parties(
        self,
        changed_since: datetime | str | None = None,
        *,
        name: str | None = None,
        page_size: int = P.DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield pages of parties (ordered by BetNr), optionally only those changed since a UTC time."""
        filters: dict[str, str] = {}
        if changed_since is not None:
            if isinstance(changed_since, datetime):
                aware = changed_since if changed_since.tzinfo else changed_since.replace(tzinfo=UTC)
                changed_since = P.format_utc(aware)
            filters[P.BeteiligteQuery.CHANGED_SINCE.value] = changed_since
        if name:
            filters[P.BeteiligteQuery.NAME.value] = name
        async for page in self._party_pages(filters, page_size):
            yield page

    async def get_party(self, betnr: int) -> dict[str, Any]:
        return self._record(await self._call("GET", P.beteiligter_path(betnr)), P.BeteiligterField)

    async def find_party_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        """The party whose `ExterneId` is `external_id` (e.g. the EspoCRM id), or None.

        Checks the field itself, so it stays correct if a server ignores the filter."""
        field_name = P.PARTY_EXTERNAL_ID_FIELD.value
        async for page in self._party_pages({P.BeteiligteQuery.EXTERNAL_ID.value: external_id}, P.DEFAULT_PAGE_SIZE):
            for party in page:
                if party.get(field_name) == external_id:
                    return party
        return None

    async def create_party(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create a party (sent once, never retried: look it up by external id before retrying)."""
        body = self._outgoing(data, P.BeteiligterField, P.BETEILIGTER_READ_ONLY)
        doc = await self._call("POST", P.BETEILIGTE_PATH, json_body=body)
        if isinstance(doc, dict):
            return self._record(doc, P.BeteiligterField)
        return await self.get_party(int(doc))

    async def update_party(self, betnr: int, data: Mapping[str, Any], *, merge: bool = True) -> dict[str, Any]:
        """Update a party; PUT replaces the record, so by default `data` is laid over the current one."""
        changes = self._outgoing(data, P.BeteiligterField, P.BETEILIGTER_READ_ONLY)
        if merge:
            current = self._outgoing(await self.get_party(betnr), P.BeteiligterField, P.BETEILIGTER_READ_ONLY)
            changes = {**current, **changes}
        doc = await self._call("PUT", P.beteiligter_path(betnr), json_body=changes)
        if isinstance(doc, dict):
            return self._record(doc, P.BeteiligterField)
        return await self.get_party(betnr)

    async def delete_party(self, betnr: int) -> None:
        """Delete a party; ConflictError (with Advoware's German reason) when matters use it."""
        await self._call("DELETE", P.beteiligter_path(betnr), missing_ok_on_retry=True)

    # bank accounts ---------------------------------------------------------------------
    async def list_bank_accounts(self, betnr: int) -> list[dict[str, Any]]:
        return self._records(await self._call("GET", P.bankverbindungen_path(betnr)), P.BankverbindungField)

    async def create_bank_account(self, betnr: int, data: Mapping[str, Any]) -> dict[str, Any]:
        body = self._outgoing(data, P.BankverbindungField, P.BANKVERBINDUNG_READ_ONLY)
        doc = await self._call("POST", P.bankverbindungen_path(betnr), json_body=body)
        return self._record(doc, P.BankverbindungField)

    async def update_bank_account(
        self, betnr: int, bank_id: int, data: Mapping[str, Any], *, merge: bool = True
    ) -> dict[str, Any]:
        """Update a bank account; by default `data` is laid over the current record."""
        changes = self._outgoing(data, P.BankverbindungField, P.BANKVERBINDUNG_READ_ONLY)
        if merge:
            id_field = P.BankverbindungField.ID.value
            current = next((b for b in await self.list_bank_accounts(betnr) if b.get(id_field) == bank_id), None)
            if current is None:
                raise NotFoundError(SERVICE, 404, f"Bankverbindung {bank_id} des Beteiligten {betnr} nicht gefunden")
            changes = {**self._outgoing(current, P.BankverbindungField, P.BANKVERBINDUNG_READ_ONLY), **changes}
        doc = await self._call("PUT", P.bankverbindung_path(betnr, bank_id), json_body=changes)
        return self._record(doc, P.BankverbindungField)

    async def delete_bank_account(self, betnr: int, bank_id: int) -> None:
        await self._call("DELETE", P.bankverbindung_path(betnr, bank_id), missing_ok_on_retry=True)
