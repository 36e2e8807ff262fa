"""Simulator of the EspoCRM REST API (`/api/v1`, see external-apis.md §1).

Faithful to EspoCRM where it is documented or visible in its source:
- Auth: `X-Api-Key`, `X-Hmac-Authorization` (`base64(key + ":" + hex(HMAC-SHA256(secret, "METHOD /path")))`,
  path after `/api/v1`, no query), `Authorization: Basic` (and `Espo-Authorization`). When the
  simulator has an HMAC secret, the key alone is refused (an HMAC API user can't use plain key
  auth). Failure → 401 with `X-Status-Reason`.
- Errors carry their reason in `X-Status-Reason`; bodies are empty except for a duplicate
  (409, reason `duplicate`, body = JSON list of the duplicates) and a validation failure
  (400, body `{"messageTranslation": {"label": "validationFailure", ...}}`).
- Lists: `maxSize` defaults to the limit 200 (as EspoCRM does when it is missing); more than 200
  → **403** "Max size should not exceed 200. Use offset and limit." `orderBy`/`order`, `select`
  (`id` always included), `where` as PHP bracket query or `searchParams` JSON, `X-No-Total: true`
  gives total -1 (more records) / -2 (no more). Default order `createdAt desc`; ties (and every
  order) are broken by `id` in the same direction, so offset paging is stable.
- String comparisons (equals, in, contains, like, ordering) ignore case like MySQL's `_ci` collation.
- Create answers **200** with the record (EspoCRM does not use 201); ids are 17 hex chars like
  `Util::generateId()` (uniqid + 4 random hex). `createdAt`/`modifiedAt` are `YYYY-MM-DD HH:MM:SS` UTC.
- Duplicate check on create (unless `X-Skip-Duplicate-Check: true`): for `CBeteiligte` and
  `Account`, a record with the same `name` (trimmed, case-insensitive) is a duplicate → 409.
- Update (PUT/PATCH) stores changed attributes only and answers the full record; `modifiedAt`
  moves only when something changed. Delete answers `true`.
- Enum fields of the project's data model are validated (see ENUM_OPTIONS) → 400.
- Relationships (see DEFAULT_LINKS) are symmetric; `{link}Ids` on create/update sets many-many
  links; a one-to-many link is stored as the child's `{link}Id`/`{link}Name`. A link that is a
  link-multiple field on its side (LinkDef.link_multiple_field/_foreign; the document's three links) is
  loaded into a record read as `{link}Ids` and `{link}Names` (id → name), and into list rows
  only when `select` names them (EspoCRM's FieldProcessing/LinkMultiple Loader and ListLoader).
- Attachments: `POST Attachment` with a `data:` URI, `GET Attachment/file/{id}` raw bytes.
- Outgoing webhooks like EspoCRM's queue: per webhook, items are batched (≤ 50) into one signed
  JSON array (PHP `json_encode` bytes, `Signature` + legacy `X-Signature` headers). Only
  2xx/3xx succeed; 410 deletes the webhook; connection failure (0), 401, 403, 404, 405, 408, 500,
  503 are retried (real EspoCRM: 4 attempts, 10 minutes apart — here `webhook_attempts` and
  `webhook_retry_interval`, default 4 × 2 s); any other status fails at once. New items go out
  after a quiet period of `webhook_debounce` (50 ms; at the latest 1 s after the oldest, or at
  once when 50 are waiting), so bursts form batches (real EspoCRM sends from its cron job);
  one request per webhook is in flight at a time; sending never blocks API answers. `update` items hold the changed attributes (without `modifiedAt`) + `id`, only when
  something changed; `fieldUpdate.{field}` items hold `id` + the field's attributes.

Project-specific [I], emulating the firm's EspoCRM customisations:
- Link notifications: a webhook registered for `CDokumente.link` / `CDokumente.unlink` receives
  `[{"entityType": <other type>, "entityId": <other id>, "documentId": <doc id>}]` whenever a
  document is (un)linked from either side; for other types `{X}.link` items are
  `{"id", "entityType", "entityId"}`. EspoCRM core sends no `update` for link changes, nor do we.
- Document hook (`doc_hooks=True`): when a `CDokumente` record gets a new `fileId`, `fileName`,
  `md5sum` and `sha256` are filled from the attachment (unless given), a created document
  defaults to `fileStatus` `new`, and an update that replaces the file of a document whose
  status is not `new` sets `fileStatus` `changed` (unless given).

Admin (besides simulators.base): `POST /_sim/seed` loads
`{"entities": {"CDokumente": [...]}, "attachments": [{"id","name","type","contentBase64"|"path"}],
  "links": [{"entityType","id","link","foreignId"|"foreignIds"}],
  "linkDefs": [{"entityType","link","foreignEntityType","foreignLink","kind"?,"linkMultipleField"?,"linkMultipleFieldForeign"?}],
  "webhooks": [{"id"?,"event","url","secretKey"?}]}` (paths relative to simulators/seed/);
`GET|DELETE /_sim/webhook-deliveries`; `GET /_sim/webhooks`; `POST /_sim/webhooks/flush?timeout=5`
(waits until no webhook item is pending); `GET /_sim/entities/{entityType}` (raw records).

Package layout: `model` (data model, ids, errors), `query` (list parameters and the `where`
language), `signing` (webhook body bytes and signatures, the simulator's own), `webhooks`
(the outgoing queue), `data` (records and relations), `app` (routes).
"""

from __future__ import annotations

from simulators.espocrm.app import create_app, state_of
from simulators.espocrm.data import Attachment, EspoCRMState, load_seed_file
from simulators.espocrm.model import (
    API_PREFIX,
    DEFAULT_LINKS,
    DEMO_SEED_PATH,
    ENUM_OPTIONS,
    MAX_SIZE_LIMIT,
    SEED_DIR,
    EntityTypeName,
    EspoError,
    LinkDef,
    LinkKind,
)
from simulators.espocrm.query import (
    SearchParams,
    WhereEvaluator,
    parse_php_query,
    parse_search_params,
    php_listify,
)
from simulators.espocrm.signing import (
    MAX_BATCH_SIZE,
    WebhookAction,
    WebhookEvent,
    legacy_signature,
    php_json_encode,
    sign_body,
)
from simulators.espocrm.webhooks import Webhook, WebhookDispatcher

__all__ = [
    "API_PREFIX",
    "DEFAULT_LINKS",
    "DEMO_SEED_PATH",
    "ENUM_OPTIONS",
    "MAX_BATCH_SIZE",
    "MAX_SIZE_LIMIT",
    "SEED_DIR",
    "Attachment",
    "EntityTypeName",
    "EspoCRMState",
    "EspoError",
    "LinkDef",
    "LinkKind",
    "SearchParams",
    "Webhook",
    "WebhookAction",
    "WebhookDispatcher",
    "WebhookEvent",
    "WhereEvaluator",
    "create_app",
    "legacy_signature",
    "load_seed_file",
    "parse_php_query",
    "parse_search_params",
    "php_json_encode",
    "php_listify",
    "sign_body",
    "state_of",
]
