"""In-memory fakes of the EspoCRM and Advoware clients for the Beteiligte sync tests.

They follow the simulators' behaviour where the sync depends on it: EspoCRM stores only
changed attributes and moves `modifiedAt` (whole seconds) only when something changed,
queueing an `update` webhook item; Advoware PUT replaces the record and moves
`GeaendertAm` (ms), refuses deleting a party used by a matter (409), validates the IBAN
(400, with the fakes' own mod-97 check) and requires `Name`; it logs every call with the
§3 path it stands for (`calls`). Both count writes. A shared `Clock` advances on every write
so modification times are ordered. `faults` makes the next N calls of a method fail.
FakeEspo logs its calls too (`calls`, one per page of 200 for listings, like the client), and
its listings know `greaterThanOrEquals`, `or` and `order_by`.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from services.clients.errors import ApiError, ConflictError, NotFoundError, api_error_for

# --- The fakes' own knowledge of Advoware ------------------------------------------------
# Written from ../shared/spec/external-apis.md §3, NOT imported from the project (neither
# services.clients.advoware.paths nor the production IBAN check) nor from simulators/: when
# the project gets a path, a field's casing or a check wrong, these tests disagree with it
# instead of agreeing by construction.

BETEILIGTE_PATH = "api/v1/advonet/Beteiligte"
"""§3: parties; one party is `{BETEILIGTE_PATH}/{betNr}`."""
BANKVERBINDUNGEN_SEGMENT = "Bankverbindungen"
"""§3: a party's bank accounts are `{BETEILIGTE_PATH}/{betNr}/Bankverbindungen[/{id}]`."""


def party_path(betnr: int | None = None) -> str:
    return BETEILIGTE_PATH if betnr is None else f"{BETEILIGTE_PATH}/{betnr}"


def bank_accounts_path(betnr: int, bank_id: int | None = None) -> str:
    base = f"{party_path(betnr)}/{BANKVERBINDUNGEN_SEGMENT}"
    return base if bank_id is None else f"{base}/{bank_id}"


PARTY_FIELDS = (
    "BetNr", "Anrede", "Titel", "Name", "Vorname", "Rechtsform", "Geburtsdatum", "Email",
    "Telefon", "Mobil", "Strasse", "PLZ", "Ort", "Land", "ExterneId", "GeaendertAm",
)  # fmt: skip
"""PascalCase like the documented resources (§3); BetNr and GeaendertAm are the server's."""
PARTY_READ_ONLY = frozenset({"BetNr", "GeaendertAm"})
BANK_FIELDS = ("Id", "IBAN", "BIC", "Bank", "Kontoinhaber", "GeaendertAm")
ESPO_PAGE = 200
"""EspoCRM's largest page (maxSize): a listing costs one call per started page."""


def canonical_keys(record: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """ASP.NET binds request bodies case-insensitively: keys onto `fields`' casing, others kept."""
    by_lower = {name.lower(): name for name in fields}
    return {by_lower.get(str(k).lower(), k): v for k, v in record.items()}


def utc_stamp(dt: datetime) -> str:
    """A UTC modification time as the API writes it: `YYYY-MM-DDTHH:MM:SS.fffZ`."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


_STAMP_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_stamp(value: str) -> datetime:
    """A UTC timestamp with 0-9 fractional digits and `Z`, an offset or no zone (UTC)."""
    m = _STAMP_RE.match(value.strip())
    if m is None:
        raise ValueError(f"not a timestamp: {value!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), int((frac or "0")[:6].ljust(6, "0")))
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        dt -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return dt.replace(tzinfo=UTC)


def iban_checksum_ok(iban: str) -> bool:
    """ISO 13616 as the bank side checks it: country, two check digits, 11-30 alphanumerics,
    and the remainder of the rearranged number (letters A=10 .. Z=35) mod 97 equal to 1,
    computed digit by digit."""
    if re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", iban) is None:
        return False
    remainder = 0
    for ch in iban[4:] + iban[:4]:
        for digit in str(int(ch, 36)):
            remainder = (remainder * 10 + int(digit)) % 97
    return remainder == 1


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

    def tick(self, ms: int = 400) -> datetime:
        self.t += timedelta(milliseconds=ms)
        return self.t

    def __call__(self) -> datetime:
        return self.t


class Faults:
    def __init__(self) -> None:
        self.pending: dict[str, list[int]] = {}

    def inject(self, op: str, times: int = 1, status: int = 503) -> None:
        self.pending.setdefault(op, []).extend([status] * times)

    def check(self, service: str, op: str) -> None:
        queue = self.pending.get(op)
        if queue:
            status = queue.pop(0)
            raise api_error_for(service, status, f"injected fault {status} on {op}")


class FakeEspo:
    service = "espocrm"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.data: dict[str, dict[str, dict[str, Any]]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.webhooks: list[tuple[str, str]] = []  # (entity_type.action, id)
        self.calls: list[tuple[str, str]] = []
        """Every call as (method, path after /api/v1)."""
        self.faults = Faults()
        self._ids = itertools.count(1)

    def _stamp(self) -> str:
        return self.clock.tick().strftime("%Y-%m-%d %H:%M:%S")

    def table(self, entity_type: str) -> dict[str, dict[str, Any]]:
        return self.data.setdefault(entity_type, {})

    async def get_entity(self, entity_type: str, entity_id: str) -> dict[str, Any]:
        self.faults.check("espocrm", "get")
        self.calls.append(("GET", f"{entity_type}/{entity_id}"))
        rec = self.table(entity_type).get(entity_id)
        if rec is None:
            raise NotFoundError("espocrm", 404, "Not Found")
        return copy.deepcopy(rec)

    def user_create(self, entity_type: str, data: Mapping[str, Any], entity_id: str | None = None) -> dict[str, Any]:
        rid = entity_id or f"e{next(self._ids):05d}"
        rec = {"id": rid, **data, "modifiedAt": self._stamp()}
        self.table(entity_type)[rid] = rec
        self.webhooks.append((f"{entity_type}.create", rid))
        return copy.deepcopy(rec)

    def user_update(self, entity_type: str, entity_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        rec = self.table(entity_type)[entity_id]
        changed = {k: v for k, v in data.items() if rec.get(k) != v}
        if changed:
            rec.update(changed)
            rec["modifiedAt"] = self._stamp()
            self.webhooks.append((f"{entity_type}.update", entity_id))
        return copy.deepcopy(rec)

    def user_delete(self, entity_type: str, entity_id: str) -> None:
        del self.table(entity_type)[entity_id]
        self.webhooks.append((f"{entity_type}.delete", entity_id))

    async def create_entity(self, entity_type: str, data: Mapping[str, Any], skip_duplicate_check: bool = False) -> dict[str, Any]:
        self.faults.check("espocrm", "create")
        self.calls.append(("POST", entity_type))
        self.writes.append(("POST", entity_type, ""))
        return self.user_create(entity_type, data)

    async def update_entity(self, entity_type: str, entity_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        self.faults.check("espocrm", "update")
        self.calls.append(("PUT", f"{entity_type}/{entity_id}"))
        if entity_id not in self.table(entity_type):
            raise NotFoundError("espocrm", 404, "Not Found")
        self.writes.append(("PUT", entity_type, entity_id))
        return self.user_update(entity_type, entity_id, data)

    async def delete_entity(self, entity_type: str, entity_id: str) -> bool:
        self.faults.check("espocrm", "delete")
        self.calls.append(("DELETE", f"{entity_type}/{entity_id}"))
        if entity_id not in self.table(entity_type):
            raise NotFoundError("espocrm", 404, "Not Found")
        self.writes.append(("DELETE", entity_type, entity_id))
        self.user_delete(entity_type, entity_id)
        return True

    def _match(self, rec: Mapping[str, Any], where: Any) -> bool:
        for w in where or []:
            if w["type"] == "or":
                if not any(self._match(rec, [sub]) for sub in w["value"]):
                    return False
                continue
            value = rec.get(w["attribute"])
            if w["type"] == "equals" and str(value) != str(w["value"]):
                return False
            if w["type"] == "in" and value not in w["value"]:
                return False
            # datetimes `YYYY-MM-DD HH:MM:SS` compare as text
            if w["type"] == "greaterThanOrEquals" and (value is None or str(value) < str(w["value"])):
                return False
        return True

    def _pages(self, path: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls.extend([("GET", path)] * max(1, -(-len(rows) // ESPO_PAGE)))
        return [copy.deepcopy(r) for r in rows]

    async def list_entities(self, entity_type: str, where: Any = None, select: Any = None, max_size: int = 50, **_: Any) -> dict[str, Any]:
        self.faults.check("espocrm", "list")
        self.calls.append(("GET", entity_type))
        rows = [copy.deepcopy(r) for r in self.table(entity_type).values() if self._match(r, where)]
        return {"list": rows[:max_size], "total": len(rows)}

    async def iter_entities(
        self, entity_type: str, where: Any = None, select: Any = None, order_by: str = "id", **_: Any
    ) -> AsyncIterator[dict[str, Any]]:
        self.faults.check("espocrm", "list")
        rows = sorted((r for r in self.table(entity_type).values() if self._match(r, where)), key=lambda r: (str(r.get(order_by)), r["id"]))
        for r in self._pages(entity_type, rows):
            yield r

    async def iter_related(self, entity_type: str, entity_id: str, link: str, select: Any = None, **_: Any) -> AsyncIterator[dict[str, Any]]:
        assert (entity_type, link) == ("CBeteiligte", "bankverbindungen")
        rows = sorted((r for r in self.table("CBankverbindungen").values() if r.get("beteiligteId") == entity_id), key=lambda r: r["id"])
        for r in self._pages(f"{entity_type}/{entity_id}/{link}", rows):
            yield r


class FakeAdvoware:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.parties: dict[int, dict[str, Any]] = {}
        self.banks: dict[int, dict[str, Any]] = {}
        self.bank_owner: dict[int, int] = {}
        self.matters: set[int] = set()  # BetNrs referenced by a matter
        self.writes: list[tuple[str, str]] = []
        self.calls: list[tuple[str, str]] = []
        """Every call as (method, §3 path) it stands for, faulted ones included."""
        self.faults = Faults()
        self._betnr = itertools.count(1000)
        self._bank_id = itertools.count(1)

    def _stamp(self) -> str:
        return utc_stamp(self.clock.tick())

    def _clean_party(self, body: Mapping[str, Any], betnr: int) -> dict[str, Any]:
        body = canonical_keys(body, PARTY_FIELDS)
        name = str(body.get("Name") or "").strip()
        if not name:
            raise ApiError("advoware", 400, 'Das Feld "Name" ist erforderlich.')
        rec = {f: body.get(f) for f in PARTY_FIELDS if f not in PARTY_READ_ONLY}
        rec["Name"] = name
        if rec.get("Geburtsdatum"):
            rec["Geburtsdatum"] = str(rec["Geburtsdatum"])[:10] + "T00:00:00"
        return {"BetNr": betnr, **rec, "GeaendertAm": self._stamp()}

    def _clean_bank(self, body: Mapping[str, Any], bank_id: int) -> dict[str, Any]:
        body = canonical_keys(body, BANK_FIELDS)
        iban = str(body.get("IBAN") or "").replace(" ", "").upper()
        if not iban_checksum_ok(iban):
            raise ApiError("advoware", 400, f'Die IBAN "{iban}" ist ungültig.')
        return {
            "Id": bank_id,
            "IBAN": iban,
            "BIC": (body.get("BIC") or None),
            "Bank": body.get("Bank"),
            "Kontoinhaber": body.get("Kontoinhaber"),
            "GeaendertAm": self._stamp(),
        }

    # parties
    async def find_party_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        self.faults.check("advoware", "find")
        self.calls.append(("GET", party_path()))
        for p in self.parties.values():
            if p.get("ExterneId") == external_id:
                return copy.deepcopy(p)
        return None

    async def get_party(self, betnr: int) -> dict[str, Any]:
        self.faults.check("advoware", "get")
        self.calls.append(("GET", party_path(betnr)))
        if betnr not in self.parties:
            raise NotFoundError("advoware", 404, f"Der Beteiligte {betnr} wurde nicht gefunden.")
        return copy.deepcopy(self.parties[betnr])

    async def create_party(self, data: Mapping[str, Any]) -> dict[str, Any]:
        self.faults.check("advoware", "create")
        self.calls.append(("POST", party_path()))
        betnr = next(self._betnr)
        rec = self._clean_party(data, betnr)
        self.parties[betnr] = rec
        self.writes.append(("POST", f"party:{betnr}"))
        return copy.deepcopy(rec)

    def user_create_party(self, data: Mapping[str, Any]) -> dict[str, Any]:
        betnr = next(self._betnr)
        self.parties[betnr] = self._clean_party(data, betnr)
        return copy.deepcopy(self.parties[betnr])

    def user_update_party(self, betnr: int, changes: Mapping[str, Any]) -> None:
        cur = {k: v for k, v in self.parties[betnr].items() if k not in ("BetNr", "GeaendertAm")}
        self.parties[betnr] = self._clean_party({**cur, **changes}, betnr)

    async def update_party(self, betnr: int, data: Mapping[str, Any], *, merge: bool = True) -> dict[str, Any]:
        self.faults.check("advoware", "update")
        self.calls.append(("PUT", party_path(betnr)))
        if betnr not in self.parties:
            raise NotFoundError("advoware", 404, "nicht gefunden")
        body = dict(data)
        if merge:
            body = {**self.parties[betnr], **body}
        self.parties[betnr] = self._clean_party(body, betnr)
        self.writes.append(("PUT", f"party:{betnr}"))
        return copy.deepcopy(self.parties[betnr])

    def user_delete_party(self, betnr: int) -> None:
        del self.parties[betnr]
        for bid in [b for b, o in self.bank_owner.items() if o == betnr]:
            self.banks.pop(bid)
            self.bank_owner.pop(bid)

    async def delete_party(self, betnr: int) -> None:
        self.faults.check("advoware", "delete")
        self.calls.append(("DELETE", party_path(betnr)))
        if betnr not in self.parties:
            raise NotFoundError("advoware", 404, "nicht gefunden")
        if betnr in self.matters:
            raise ConflictError("advoware", 409, f"Der Beteiligte {betnr} kann nicht gelöscht werden, da er noch mit 1 Akte(n) verknüpft ist.")
        self.writes.append(("DELETE", f"party:{betnr}"))
        self.user_delete_party(betnr)

    async def list_parties(self, changed_since: Any = None, *, page_size: int = 100, **_: Any) -> AsyncIterator[list[dict[str, Any]]]:
        self.faults.check("advoware", "list")
        items = [copy.deepcopy(self.parties[n]) for n in sorted(self.parties)]
        if changed_since:
            since = parse_stamp(changed_since) if isinstance(changed_since, str) else changed_since
            items = [p for p in items if parse_stamp(p["GeaendertAm"]) >= since]
        for i in range(0, len(items) + 1, page_size):  # one call per page, the last one short
            self.calls.append(("GET", party_path()))
            if items[i : i + page_size]:
                yield items[i : i + page_size]

    # bank accounts
    async def list_bank_accounts(self, betnr: int) -> list[dict[str, Any]]:
        self.faults.check("advoware", "list_banks")
        self.calls.append(("GET", bank_accounts_path(betnr)))
        if betnr not in self.parties:
            raise NotFoundError("advoware", 404, "nicht gefunden")
        return [copy.deepcopy(self.banks[b]) for b in sorted(self.banks) if self.bank_owner[b] == betnr]

    async def create_bank_account(self, betnr: int, data: Mapping[str, Any]) -> dict[str, Any]:
        self.faults.check("advoware", "create_bank")
        self.calls.append(("POST", bank_accounts_path(betnr)))
        if betnr not in self.parties:
            raise NotFoundError("advoware", 404, "nicht gefunden")
        bid = next(self._bank_id)
        self.banks[bid] = self._clean_bank(data, bid)
        self.bank_owner[bid] = betnr
        self.writes.append(("POST", f"bank:{bid}"))
        return copy.deepcopy(self.banks[bid])

    def user_update_bank(self, bank_id: int, changes: Mapping[str, Any]) -> None:
        cur = {k: v for k, v in self.banks[bank_id].items() if k not in ("Id", "GeaendertAm")}
        self.banks[bank_id] = self._clean_bank({**cur, **changes}, bank_id)

    async def update_bank_account(self, betnr: int, bank_id: int, data: Mapping[str, Any], *, merge: bool = True) -> dict[str, Any]:
        self.faults.check("advoware", "update_bank")
        self.calls.append(("PUT", bank_accounts_path(betnr, bank_id)))
        if self.bank_owner.get(bank_id) != betnr:
            raise NotFoundError("advoware", 404, "nicht gefunden")
        body = {**self.banks[bank_id], **data} if merge else dict(data)
        self.banks[bank_id] = self._clean_bank(body, bank_id)
        self.writes.append(("PUT", f"bank:{bank_id}"))
        return copy.deepcopy(self.banks[bank_id])

    async def delete_bank_account(self, betnr: int, bank_id: int) -> None:
        self.faults.check("advoware", "delete_bank")
        self.calls.append(("DELETE", bank_accounts_path(betnr, bank_id)))
        if self.bank_owner.get(bank_id) != betnr:
            raise NotFoundError("advoware", 404, "nicht gefunden")
        self.writes.append(("DELETE", f"bank:{bank_id}"))
        del self.banks[bank_id]
        del self.bank_owner[bank_id]


class _QuietLogger:
    def _drop(self, message: str, data: Any = None) -> None:
        pass

    info = warn = warning = error = debug = _drop


class _QuietContext:
    logger = _QuietLogger()


class World:
    """Both fakes, a state store and the sync, plus a tiny queue: `drain()` delivers the
    pending EspoCRM webhooks and follow-up events until nothing is left."""

    def __init__(self, *, quiet: bool = False, guard: Any = None) -> None:
        from iii_local.testing import MemoryState
        from services.parties.executor import BeteiligteSync

        self.clock = Clock()
        self.espo = FakeEspo(self.clock)
        self.advo = FakeAdvoware(self.clock)
        self.state = MemoryState()
        self.sync = BeteiligteSync(
            self.espo, self.advo, self.state, now=self.clock, context=_QuietContext() if quiet else None, guard=guard
        )
        self.events: list[tuple[str, str, str]] = []  # (kind, id, source)
        self.results: list[Any] = []

    def writes(self) -> int:
        return len(self.espo.writes) + len(self.advo.writes)

    async def run(self, kind: str, entity_id: str, source: Any = None) -> Any:
        from services.platform.models import SyncSource

        src = source or SyncSource.WEBHOOK
        if kind == "party":
            result = await self.sync.sync_party(entity_id, source=src)
        else:
            result = await self.sync.sync_bank(entity_id, source=src)
        self.results.append(result)
        for ev in result.follow_ups:
            k = "party" if ev["topic"].startswith("vmh.beteiligte.") else "bank"
            self.events.append((k, ev["data"]["entity_id"], ev["data"]["source"]))
        return result

    def _take_webhooks(self) -> None:
        for event, rid in self.espo.webhooks:
            kind = "party" if event.startswith("CBeteiligte.") else "bank"
            self.events.append((kind, rid, "webhook"))
        self.espo.webhooks.clear()

    async def drain(self, limit: int = 200, *, swallow: bool = False) -> int:
        """Process events until none is left; returns how many ran. Fails past `limit`
        (that would be ping-pong). With `swallow`, errors count as a failed delivery
        (the event is re-queued once, like a queue retry)."""
        from services.platform.models import SyncSource

        ran = 0
        retried: set[tuple[str, str]] = set()
        self._take_webhooks()
        while self.events:
            kind, rid, source = self.events.pop(0)
            ran += 1
            if ran > limit:
                raise AssertionError(f"more than {limit} sync runs: ping-pong?")
            try:
                await self.run(kind, rid, SyncSource(source))
            except Exception:
                if not swallow:
                    raise
                if (kind, rid) not in retried:
                    retried.add((kind, rid))
                    self.events.append((kind, rid, source))
            self._take_webhooks()
        return ran
