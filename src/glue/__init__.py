"""Step glue shared by the steps: the only Motia-aware code outside `src/steps/`.

Motia discovers only `*_step.py` files, so this package is never taken for a step. Its
modules take the engine's `request`/`ctx`, build `ApiResponse`s, write the response channel,
enqueue and run the sync ledger; every decision they apply lives in `services/` (framework
free): `services.webhooks.intake` (authenticate, split_batch), `services.proxy` (request
validation, forwarding), `services.platform.ledger` (run_marked, the entity lock).

- `src.glue.http`: `json_response`, `send_answer` (status, headers and bytes through the response channel).
- `src.glue.webhook`: `accept_webhook`, the whole EspoCRM webhook step.
- `src.glue.proxy`: `handle_proxy_request`, the Advoware proxy step.
- `src.glue.ops`: the operators' API (bearer check, failures to answers).
- `src.glue.queue_handlers`: the queue handlers (documents, collections, calendar, parties).
"""
