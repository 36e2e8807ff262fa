"""EspoCRM simulator: records, attachments and relationships of one CRM, and the change notifications they cause."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.base import SimulatorState
from simulators.espocrm.model import (
    API_PREFIX,
    DEFAULT_LINKS,
    DEMO_SEED_PATH,
    DUPLICATE_CHECK_TYPES,
    ENTITY_NAME_RE,
    ENUM_OPTIONS,
    MAX_SIZE_LIMIT,
    READ_ONLY_ATTRIBUTES,
    SEED_DIR,
    WEBHOOK_SKIP_ATTRIBUTES,
    Attachment,
    EntityTypeName,
    EspoError,
    FileStatus,
    LinkDef,
    LinkKind,
    generate_id,
    now_str,
)
from simulators.espocrm.query import SearchParams, WhereEvaluator, same_value, sort_key
from simulators.espocrm.signing import (
    WebhookAction,
)
from simulators.espocrm.webhooks import WebhookDispatcher


class EspoCRMState(SimulatorState):
    """Records, links, attachments and webhooks of one simulated EspoCRM."""

    def __init__(
        self,
        api_key: str,
        hmac_secret: str | None = None,
        basic: tuple[str, str] | None = None,
        *,
        dispatcher: WebhookDispatcher | None = None,
        links: Iterable[LinkDef] = DEFAULT_LINKS,
        doc_hooks: bool = True,
        max_size_limit: int = MAX_SIZE_LIMIT,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.hmac_secret = hmac_secret
        self.basic = basic
        self.doc_hooks = doc_hooks
        self.max_size_limit = max_size_limit
        self.dispatcher = dispatcher or WebhookDispatcher()
        self.entities: dict[str, dict[str, dict[str, Any]]] = {}
        self.attachments: dict[str, Attachment] = {}
        self.link_defs: list[LinkDef] = []
        self._sides: dict[tuple[str, str], tuple[LinkDef, bool]] = {}
        self._fwd: dict[LinkDef, dict[str, set[str]]] = {}
        self._rev: dict[LinkDef, dict[str, set[str]]] = {}
        for ld in links:
            self.add_link_def(ld)
        self.initial_seed: dict[str, Any] | None = None

    def reset(self) -> None:
        super().reset()
        self.entities.clear()
        self.attachments.clear()
        for ld in self.link_defs:
            self._fwd[ld] = {}
            self._rev[ld] = {}
        self.dispatcher.reset()

    # --- auth
    def authenticate(self, request: web.Request) -> None:
        headers = request.headers
        hmac_header = headers.get("X-Hmac-Authorization")
        if hmac_header:
            try:
                decoded = base64.b64decode(hmac_header, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise EspoError(401, "Bad HMAC authorization header.") from None
            key, _, given = decoded.partition(":")
            if self.hmac_secret is None or not hmac.compare_digest(key.encode(), self.api_key.encode()):
                raise EspoError(401, "Wrong API key.")
            path = request.rel_url.raw_path[len(API_PREFIX) :] or "/"
            expected = hmac.new(
                self.hmac_secret.encode(), f"{request.method} {path}".encode(), hashlib.sha256
            ).hexdigest()
            if not hmac.compare_digest(expected.encode(), given.lower().encode()):
                raise EspoError(401, "HMAC signature mismatch.")
            return
        api_key = headers.get("X-Api-Key")
        if api_key is not None:
            if self.hmac_secret is not None:
                raise EspoError(401, "API user requires HMAC authorization.")
            if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
                raise EspoError(401, "Wrong API key.")
            return
        basic_raw: str | None = None
        auth = headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            basic_raw = auth[6:].strip()
        elif headers.get("Espo-Authorization"):
            basic_raw = headers["Espo-Authorization"].strip()
        if basic_raw is not None:
            try:
                user, _, password = base64.b64decode(basic_raw, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, ValueError):
                raise EspoError(401, "Bad basic authorization header.") from None
            if self.basic is None or not (
                hmac.compare_digest(user.encode(), self.basic[0].encode())
                and hmac.compare_digest(password.encode(), self.basic[1].encode())
            ):
                raise EspoError(401, "Wrong username or password.")
            return
        raise EspoError(401, "No credentials.")

    # --- links
    def add_link_def(self, ld: LinkDef) -> None:
        self.link_defs.append(ld)
        self._sides[(ld.entity_type, ld.link)] = (ld, True)
        self._sides[(ld.foreign_type, ld.foreign_link)] = (ld, False)
        self._fwd[ld] = {}
        self._rev[ld] = {}

    def links_of(self, entity_type: str) -> list[str]:
        return [link for (etype, link) in self._sides if etype == entity_type]

    def side(self, entity_type: str, link: str) -> tuple[LinkDef, bool]:
        found = self._sides.get((entity_type, link))
        if found is None:
            raise EspoError(404, f"Link '{link}' does not exist in '{entity_type}'.")
        return found

    def other_type(self, entity_type: str, link: str) -> str:
        ld, primary = self.side(entity_type, link)
        return ld.foreign_type if primary else ld.entity_type

    def related_ids(self, entity_type: str, record_id: str, link: str) -> list[str]:
        ld, primary = self.side(entity_type, link)
        if ld.kind is LinkKind.MANY_MANY:
            index = self._fwd[ld] if primary else self._rev[ld]
            return sorted(index.get(record_id, ()))
        children = self.entities.get(ld.foreign_type, {})
        if primary:
            return [cid for cid, rec in children.items() if rec.get(ld.fk) == record_id]
        child = children.get(record_id)
        parent = child.get(ld.fk) if child else None
        return [parent] if parent else []

    def link_fields(self, entity_type: str) -> list[str]:
        """The links of `entity_type` that are link-multiple fields (LinkDef.link_multiple_field/_foreign)."""
        out = []
        for (etype, link), (ld, primary) in self._sides.items():
            if etype == entity_type and (ld.link_multiple_field if primary else ld.link_multiple_field_foreign):
                if ld.kind is LinkKind.MANY_MANY or primary:
                    out.append(link)
        return out

    def with_link_fields(self, entity_type: str, record: Mapping[str, Any], only: Iterable[str] | None = None) -> dict[str, Any]:
        """The record with `{link}Ids` (a list) and `{link}Names` (id → name) of its link-multiple
        fields, as EspoCRM loads them for a read (FieldProcessing/LinkMultiple/Loader); `only`:
        the fields a list's `select` names (LinkMultiple/ListLoader loads no others)."""
        out = dict(record)
        for link in self.link_fields(entity_type):
            if only is not None and link not in only:
                continue
            store = self.entities.get(self.other_type(entity_type, link), {})
            ids = [i for i in self.related_ids(entity_type, str(record["id"]), link) if i in store]
            out[f"{link}Ids"] = ids
            out[f"{link}Names"] = {i: store[i].get("name") for i in ids}
        return out

    def read(self, entity_type: str, record_id: str) -> dict[str, Any]:
        """`GET {Entity}/{id}`: the record with its link-multiple fields."""
        return self.with_link_fields(entity_type, self.require(entity_type, record_id))

    def require(self, entity_type: str, record_id: str, *, what: str = "Record") -> dict[str, Any]:
        rec = self.entities.get(entity_type, {}).get(record_id)
        if rec is None:
            raise EspoError(404, f"{what} {entity_type} '{record_id}' not found.")
        return rec

    def link(self, entity_type: str, record_id: str, link: str, foreign_id: str, *, notify: bool = True) -> bool:
        """Relate two existing records; returns False when they already were."""
        ld, primary = self.side(entity_type, link)
        self.require(entity_type, record_id)
        other = self.other_type(entity_type, link)
        self.require(other, foreign_id, what="Related record")
        if ld.kind is LinkKind.MANY_MANY:
            a, b = (record_id, foreign_id) if primary else (foreign_id, record_id)
            if b in self._fwd[ld].get(a, set()):
                return False
            self._fwd[ld].setdefault(a, set()).add(b)
            self._rev[ld].setdefault(b, set()).add(a)
        else:
            parent_id, child_id = (record_id, foreign_id) if primary else (foreign_id, record_id)
            child = self.entities[ld.foreign_type][child_id]
            previous = child.get(ld.fk)
            if previous == parent_id:
                return False
            child[ld.fk] = parent_id
            child[ld.fk_name] = self.entities[ld.entity_type][parent_id].get("name")
            if previous and notify:
                self._notify_link(WebhookAction.UNLINK, ld.foreign_type, child_id, ld.entity_type, previous)
        if notify:
            self._notify_link(WebhookAction.LINK, entity_type, record_id, other, foreign_id)
        return True

    def unlink(self, entity_type: str, record_id: str, link: str, foreign_id: str, *, notify: bool = True) -> bool:
        ld, primary = self.side(entity_type, link)
        self.require(entity_type, record_id)
        other = self.other_type(entity_type, link)
        if ld.kind is LinkKind.MANY_MANY:
            a, b = (record_id, foreign_id) if primary else (foreign_id, record_id)
            if b not in self._fwd[ld].get(a, set()):
                return False
            self._fwd[ld][a].discard(b)
            self._rev[ld][b].discard(a)
        else:
            parent_id, child_id = (record_id, foreign_id) if primary else (foreign_id, record_id)
            child = self.entities.get(ld.foreign_type, {}).get(child_id)
            if child is None or child.get(ld.fk) != parent_id:
                return False
            child[ld.fk] = None
            child[ld.fk_name] = None
        if notify:
            self._notify_link(WebhookAction.UNLINK, entity_type, record_id, other, foreign_id)
        return True

    def _notify_link(self, action: WebhookAction, type_a: str, id_a: str, type_b: str, id_b: str) -> None:
        for own_type, own_id, other_type, other_id in ((type_a, id_a, type_b, id_b), (type_b, id_b, type_a, id_a)):
            event = f"{own_type}.{action.value}"
            if not self.dispatcher.has_event(event):
                continue
            if own_type == EntityTypeName.DOKUMENTE.value:
                data = {"entityType": other_type, "entityId": other_id, "documentId": own_id}
            else:
                data = {"id": own_id, "entityType": other_type, "entityId": other_id}
            self.dispatcher.emit(event, data)

    def _drop_links_of(self, entity_type: str, record_id: str) -> None:
        for ld in self.link_defs:
            if ld.kind is not LinkKind.MANY_MANY:
                continue
            if ld.entity_type == entity_type:
                for b in self._fwd[ld].pop(record_id, set()):
                    self._rev[ld].get(b, set()).discard(record_id)
            if ld.foreign_type == entity_type:
                for a in self._rev[ld].pop(record_id, set()):
                    self._fwd[ld].get(a, set()).discard(record_id)

    # --- records
    def _validate(self, entity_type: str, data: Mapping[str, Any]) -> None:
        for attr, options in ENUM_OPTIONS.get(entity_type, {}).items():
            if attr in data and data[attr] is not None and data[attr] not in options:
                raise EspoError(
                    400,
                    f"validationFailure: {entity_type}.{attr} must be one of {', '.join(options)}",
                    {"messageTranslation": {"label": "validationFailure", "scope": None,
                                            "data": {"field": attr, "type": "valid"}}},
                )

    def _split_link_input(self, entity_type: str, data: dict[str, Any]) -> dict[str, list[str]]:
        """Pull `{link}Ids` of many-many / has-many links out of the input."""
        out: dict[str, list[str]] = {}
        for link in self.links_of(entity_type):
            ld, primary = self.side(entity_type, link)
            key = f"{link}Ids"
            if key in data and (ld.kind is LinkKind.MANY_MANY or primary):
                value = data.pop(key)
                data.pop(f"{link}Names", None)
                if value is None:
                    value = []
                if not isinstance(value, list):
                    raise EspoError(400, f"{key} must be an array.")
                out[link] = [str(v) for v in value]
        return out

    def _belongs_to_input(self, entity_type: str, data: dict[str, Any]) -> None:
        for link in self.links_of(entity_type):
            ld, primary = self.side(entity_type, link)
            if ld.kind is LinkKind.HAS_MANY and not primary and ld.fk in data:
                parent_id = data[ld.fk]
                if parent_id:
                    parent = self.require(ld.entity_type, parent_id, what="Related record")
                    data[ld.fk_name] = parent.get("name")
                else:
                    data[ld.fk] = None
                    data[ld.fk_name] = None

    def _document_hook(self, entity_type: str, data: dict[str, Any], old: Mapping[str, Any] | None) -> None:
        if not self.doc_hooks or entity_type != EntityTypeName.DOKUMENTE.value:
            return
        file_id = data.get("fileId")
        if old is None:
            data.setdefault("fileStatus", FileStatus.NEW.value)
        changed = "fileId" in data and (old is None or old.get("fileId") != file_id)
        if not changed:
            return
        att = self.attachments.get(file_id) if file_id else None
        if att is not None:
            data.setdefault("fileName", att.name)
            data.setdefault("md5sum", hashlib.md5(att.content).hexdigest())
            data.setdefault("sha256", hashlib.sha256(att.content).hexdigest())
        if old is not None and "fileStatus" not in data and old.get("fileStatus") != FileStatus.NEW.value:
            data["fileStatus"] = FileStatus.CHANGED.value

    def _find_duplicates(self, entity_type: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        if entity_type not in DUPLICATE_CHECK_TYPES:
            return []
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            return []
        key = name.strip().casefold()
        return [
            dict(r)
            for r in self.entities.get(entity_type, {}).values()
            if isinstance(r.get("name"), str) and r["name"].strip().casefold() == key
        ]

    def _checked_input(self, entity_type: str, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """A create/update body without read-only attributes, validated, with its link input
        (`{link}Ids`) split off and every linked record checked to exist."""
        data = {k: v for k, v in data.items() if k not in READ_ONLY_ATTRIBUTES}
        link_input = self._split_link_input(entity_type, data)
        self._validate(entity_type, data)
        self._belongs_to_input(entity_type, data)
        for link, ids in link_input.items():
            for fid in ids:
                self.require(self.other_type(entity_type, link), fid, what="Related record")
        return data, link_input

    def create(self, entity_type: str, data: dict[str, Any], *, skip_duplicate_check: bool = False) -> dict[str, Any]:
        data, link_input = self._checked_input(entity_type, data)
        if not skip_duplicate_check:
            dups = self._find_duplicates(entity_type, data)
            if dups:
                raise EspoError(409, "duplicate", dups)
        self._document_hook(entity_type, data, None)
        store = self.entities.setdefault(entity_type, {})
        record_id = generate_id()
        while record_id in store:
            record_id = generate_id()
        stamp = now_str()
        record = {"id": record_id, **data, "createdAt": stamp, "modifiedAt": stamp}
        store[record_id] = record
        self.dispatcher.emit(f"{entity_type}.create", dict(record))
        for link, ids in link_input.items():
            for fid in ids:
                self.link(entity_type, record_id, link, fid)
        self._notify_belongs_to(entity_type, record_id, {}, record)
        return dict(record)

    def _notify_belongs_to(self, entity_type: str, record_id: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        for link in self.links_of(entity_type):
            ld, primary = self.side(entity_type, link)
            if ld.kind is LinkKind.HAS_MANY and not primary and old.get(ld.fk) != new.get(ld.fk):
                if old.get(ld.fk):
                    self._notify_link(WebhookAction.UNLINK, entity_type, record_id, ld.entity_type, old[ld.fk])
                if new.get(ld.fk):
                    self._notify_link(WebhookAction.LINK, entity_type, record_id, ld.entity_type, new[ld.fk])

    def update(self, entity_type: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        record = self.require(entity_type, record_id)
        data, link_input = self._checked_input(entity_type, data)
        self._document_hook(entity_type, data, record)
        old = dict(record)
        changed = {k: v for k, v in data.items() if k not in record or not same_value(record[k], v)}
        if changed:
            record.update(changed)
            record["modifiedAt"] = now_str()
            payload = {k: v for k, v in changed.items() if k not in WEBHOOK_SKIP_ATTRIBUTES}
            if payload:
                self.dispatcher.emit(f"{entity_type}.update", {**payload, "id": record_id})
                self._emit_field_updates(entity_type, record, payload)
            self._notify_belongs_to(entity_type, record_id, old, record)
        for link, ids in link_input.items():
            current = set(self.related_ids(entity_type, record_id, link))
            for fid in sorted(current - set(ids)):
                self.unlink(entity_type, record_id, link, fid)
            for fid in ids:
                if fid not in current:
                    self.link(entity_type, record_id, link, fid)
        return dict(record)

    def _emit_field_updates(self, entity_type: str, record: Mapping[str, Any], changed: Mapping[str, Any]) -> None:
        prefix = f"{entity_type}.{WebhookAction.FIELD_UPDATE.value}."
        for event in {h.event for h in self.dispatcher.webhooks.values() if h.is_active and h.event.startswith(prefix)}:
            fld = event[len(prefix) :]
            attrs = [fld] if fld in record else [a for a in (f"{fld}Id", f"{fld}Name", f"{fld}Ids", f"{fld}Names") if a in record]
            if any(a in changed for a in attrs):
                self.dispatcher.emit(event, {"id": record["id"], **{a: record.get(a) for a in attrs}})

    def delete(self, entity_type: str, record_id: str) -> None:
        self.require(entity_type, record_id)
        del self.entities[entity_type][record_id]
        self._drop_links_of(entity_type, record_id)
        self.dispatcher.emit(f"{entity_type}.delete", {"id": record_id})

    def search(self, entity_type: str, params: SearchParams, candidates: Iterable[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], int]:
        evaluator = WhereEvaluator(self.related_ids, entity_type)
        pool = candidates if candidates is not None else self.entities.get(entity_type, {}).values()
        matched = [r for r in pool if evaluator.match_all(r, params.where)]
        order_by = params.order_by or "createdAt"
        matched.sort(key=lambda r: (sort_key(r.get(order_by)), str(r.get("id"))), reverse=params.order == "DESC")
        page = matched[params.offset : params.offset + params.max_size]
        if params.select:
            wanted = ["id", *[s for s in params.select if s != "id"]]
            loaded = [f for f in self.link_fields(entity_type) if f"{f}Ids" in wanted or f"{f}Names" in wanted]
            if loaded:
                page = [self.with_link_fields(entity_type, r, loaded) for r in page]
            page = [{k: r.get(k) for k in wanted} for r in page]
        else:
            page = [dict(r) for r in page]
        return page, len(matched)

    # --- attachments
    def add_attachment(self, att: Attachment) -> Attachment:
        self.attachments[att.id] = att
        return att

    # --- seed
    def load_seed(self, doc: Mapping[str, Any], base_dir: Path = SEED_DIR) -> None:
        """Add the records, attachments, links and webhooks of a seed document."""
        if not isinstance(doc, Mapping):
            raise ValueError("seed must be a JSON object")  # noqa: TRY004 - callers answer ValueError with 400
        for spec in doc.get("linkDefs", []):
            self.add_link_def(
                LinkDef(spec["entityType"], spec["link"], spec["foreignEntityType"], spec["foreignLink"],
                        LinkKind(spec.get("kind", LinkKind.MANY_MANY.value)),
                        link_multiple_field=bool(spec.get("linkMultipleField")),
                        link_multiple_field_foreign=bool(spec.get("linkMultipleFieldForeign")))
            )
        for spec in doc.get("attachments", []):
            if "contentBase64" in spec:
                content = base64.b64decode(spec["contentBase64"])
            elif "path" in spec:
                try:
                    content = (base_dir / spec["path"]).read_bytes()
                except OSError as exc:
                    raise ValueError(f"attachment file {spec['path']!r}: {exc}") from None
            else:
                content = str(spec.get("content", "")).encode("utf-8")
            self.add_attachment(
                Attachment(
                    id=spec.get("id") or generate_id(),
                    name=spec["name"],
                    type=spec.get("type", "application/octet-stream"),
                    content=content,
                    role=spec.get("role", "Attachment"),
                    related_type=spec.get("relatedType"),
                    field_name=spec.get("field"),
                )
            )
        for entity_type, records in doc.get("entities", {}).items():
            if not ENTITY_NAME_RE.match(entity_type):
                raise ValueError(f"bad entity type {entity_type!r}")
            store = self.entities.setdefault(entity_type, {})
            for rec in records:
                rec = dict(rec)
                rec.setdefault("id", generate_id())
                stamp = now_str()
                rec.setdefault("createdAt", stamp)
                rec.setdefault("modifiedAt", rec["createdAt"])
                store[rec["id"]] = rec
        for spec in doc.get("links", []):
            ids = spec.get("foreignIds") or [spec["foreignId"]]
            for fid in ids:
                try:
                    self.link(spec["entityType"], spec["id"], spec["link"], fid, notify=False)
                except EspoError as exc:
                    raise ValueError(f"bad link {spec}: {exc.reason}") from None
        for spec in doc.get("webhooks", []):
            self.dispatcher.register(spec["event"], spec["url"], webhook_id=spec.get("id"), secret_key=spec.get("secretKey"))


def load_seed_file(path: Path | str = DEMO_SEED_PATH) -> dict[str, Any]:
    """Read a seed JSON file (the demo seed by default)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


