"""Step glue shared by the steps: the only Motia-aware code outside `src/steps/`.

Motia discovers only `*_step.py` files, so this package is never taken for a step. Its
modules take the engine's `request`/`ctx`, build `ApiResponse`s, write the response channel,
enqueue and run the sync ledger; every decision they apply lives in `services/` (framework
free): `services.webhooks.intake` (authenticate, split_batch), `services.proxy` (request
validation, forwarding), `services.platform.ledger` (run_marked, the entity lock).

- `src.glue.http`: `json_response`.
- `src.glue.webhook`: `accept_webhook`, the whole EspoCRM webhook step.
- `src.glue.proxy`: `handle_proxy_request`, `send_answer`, the Advoware proxy step.
- `src.glue.queue_handlers`: the queue handlers (documents, collections, calendar, parties).
"""
