"""Advoware simulator: the stored data, issued tokens and seen nonces; seed loading."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from simulators.advoware.records import (
    clean_bankverbindung,
    clean_beteiligter,
    clean_termin,
    time_of_day,
    utc_now,
)
from simulators.advoware.wire import (
    TIMESTAMP_WINDOW_SECONDS,
    AkteBeteiligterField,
    AkteField,
    BankverbindungField,
    BeteiligterField,
    MitarbeiterField,
    TerminField,
    format_datetime,
    format_utc,
    normalize_record,
    parse_wall_clock,
)
from simulators.base import SimulatorState

DEMO_SEED_PATH = Path(__file__).resolve().parent.parent / "seed" / "advoware_demo.json"


def load_demo_seed() -> dict[str, Any]:
    """The demo seed document (employees MM/AB/CK, two matters, parties, appointments)."""
    return json.loads(DEMO_SEED_PATH.read_text(encoding="utf-8"))


Clean = Callable[[dict[str, Any], int, str], dict[str, Any]]
"""A records.clean_* function: (request body, record number, changed-at) → the stored record, or Invalid."""


class Numbered(dict[int, dict[str, Any]]):
    """The records of one kind by the number Advoware gives them (FrNr, BetNr, bank id), and the next free one."""

    def __init__(self, clean: Clean, first: int) -> None:
        super().__init__()
        self.clean = clean
        self.next = first

    def put(self, body: dict[str, Any], changed_at: str, number: int | None = None) -> dict[str, Any]:
        """Validate `body` as record `number` (None: a new record under the next free number) and store it.

        A number counts as used once its record is stored: an invalid body (Invalid) changes nothing."""
        key = self.next if number is None else number
        rec = self.clean(body, key, changed_at)
        self[key] = rec
        self.next = max(self.next, key + 1)
        return rec


@dataclass(frozen=True)
class AdvowareConfig:
    api_key: bytes
    app_id: str
    kanzlei: str
    database: str
    user: str
    password: str
    role: int
    product: int
    token_ttl_seconds: int


class AdvowareState(SimulatorState):
    """Data, issued tokens and seen nonces of one Advoware simulator."""

    def __init__(self, config: AdvowareConfig) -> None:
        super().__init__()
        self.config = config
        self.tokens: dict[str, float] = {}
        self.nonces: dict[str, float] = {}
        self.drop_data()

    def drop_data(self) -> None:
        self.mitarbeiter: dict[str, dict[str, Any]] = {}
        self.akten: dict[int, dict[str, Any]] = {}
        self.termine = Numbered(clean_termin, first=1000)
        self.beteiligte = Numbered(clean_beteiligter, first=1)
        self.bankverbindungen = Numbered(clean_bankverbindung, first=1)
        self.bank_owner: dict[int, int] = {}

    # tokens -------------------------------------------------------------------
    def issue_token(self) -> tuple[str, datetime]:
        token = secrets.token_urlsafe(32)
        expires = utc_now() + timedelta(seconds=self.config.token_ttl_seconds)
        self.tokens[token] = expires.timestamp()
        return token, expires

    def token_valid(self, token: str) -> bool:
        expires = self.tokens.get(token)
        if expires is None:
            return False
        if time.time() >= expires:
            del self.tokens[token]
            return False
        return True

    def expire_tokens(self) -> int:
        count = len(self.tokens)
        self.tokens.clear()
        return count

    def use_nonce(self, nonce: str) -> bool:
        """Record a nonce; False when it was seen within the replay window."""
        now = time.time()
        horizon = now - 4 * TIMESTAMP_WINDOW_SECONDS
        if len(self.nonces) > 10_000:
            self.nonces = {n: t for n, t in self.nonces.items() if t > horizon}
        if nonce in self.nonces and self.nonces[nonce] > horizon:
            return False
        self.nonces[nonce] = now
        return True

    # records ------------------------------------------------------------------
    def akten_of(self, betnr: int) -> list[dict[str, Any]]:
        out = []
        for akte in self.akten.values():
            for link in akte.get(AkteField.BETEILIGTE) or []:
                if int(link.get(AkteBeteiligterField.BETNR, -1)) == betnr:
                    out.append(akte)
                    break
        return out

    def load(self, doc: dict[str, Any]) -> None:
        """Add (or replace) the records of a seed document."""
        if not isinstance(doc, dict):
            raise TypeError("seed document must be a JSON object")
        now = format_utc(utc_now())
        for raw in doc.get("Mitarbeiter", []):
            rec = normalize_record(raw, MitarbeiterField)
            kuerzel = str(rec[MitarbeiterField.KUERZEL])
            self.mitarbeiter[kuerzel.upper()] = {
                MitarbeiterField.KUERZEL.value: kuerzel,
                MitarbeiterField.NAME.value: rec.get(MitarbeiterField.NAME, ""),
                MitarbeiterField.VORNAME.value: rec.get(MitarbeiterField.VORNAME, ""),
                MitarbeiterField.EMAIL.value: rec.get(MitarbeiterField.EMAIL, ""),
                MitarbeiterField.AKTIV.value: bool(rec.get(MitarbeiterField.AKTIV, True)),
            }
        for raw in doc.get("Akten", []):
            rec = normalize_record(raw, AkteField)
            nr = int(rec[AkteField.NR])
            akte = {f.value: rec.get(f) for f in AkteField}
            akte[AkteField.NR.value] = nr
            akte[AkteField.BETEILIGTE.value] = [
                {AkteBeteiligterField.BETNR.value: int(b["BetNr"]), AkteBeteiligterField.ROLLE.value: b.get("Rolle", "")}
                for b in rec.get(AkteField.BETEILIGTE) or []
            ]
            akte[AkteField.ABGELEGT.value] = int(rec.get(AkteField.ABGELEGT) or 0)
            akte[AkteField.ANGELEGT_AM.value] = rec.get(AkteField.ANGELEGT_AM) or now
            self.akten[nr] = akte
        for raw in doc.get("Beteiligte", []):
            banks = raw.get("Bankverbindungen", [])
            body = {k: v for k, v in raw.items() if k != "Bankverbindungen"}
            rec = normalize_record(body, BeteiligterField)
            party = self.beteiligte.put(rec, rec.get(BeteiligterField.GEAENDERT_AM) or now, _number(rec, BeteiligterField.BETNR))
            for bank_raw in banks:
                bank_rec = normalize_record(bank_raw, BankverbindungField)
                bank = self.bankverbindungen.put(
                    bank_rec, bank_rec.get(BankverbindungField.GEAENDERT_AM) or now, _number(bank_rec, BankverbindungField.ID)
                )
                self.bank_owner[bank[BankverbindungField.ID]] = party[BeteiligterField.BETNR]
        today = utc_now().date()
        for raw in doc.get("Termine", []):
            body = dict(raw)
            if "_day" in body:
                start_day = today + timedelta(days=int(body.pop("_day")))
                start_time = time_of_day("_time", body.pop("_time", "00:00:00"))
                end_day = today + timedelta(days=int(body.pop("_end_day"))) if "_end_day" in body else start_day
                body[TerminField.DATUM.value] = f"{start_day.isoformat()}T{start_time}Z"
                body[TerminField.DATUM_BIS.value] = f"{end_day.isoformat()}T00:00:00Z"
            if "_reminder_minutes" in body:
                reminder = parse_wall_clock(body[TerminField.DATUM.value]) - timedelta(minutes=int(body.pop("_reminder_minutes")))
                body[TerminField.ERINNERUNGS_DATUM.value] = format_datetime(reminder)
            rec = normalize_record(body, TerminField)
            self.termine.put(rec, rec.get(TerminField.ZULETZT_GEAENDERT_AM) or now, _number(rec, TerminField.FRNR))


def _number(rec: dict[str, Any], field: str) -> int | None:
    """The record number a seed gives (None: none, the table's next free one)."""
    return int(rec[field]) if rec.get(field) else None
