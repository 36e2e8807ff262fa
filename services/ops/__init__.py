"""Operations: what the firm's IT asks of this system, answered from the systems themselves and
the project's own records, the same on the real engine and on the stand-in.

- "Where is this record, and why is it (not) in sync?" — the entity view (status.py,
  status_sync.py, view.py): an entity's sync fields in EspoCRM, its counterpart in xAI, Advoware
  and Google, what the sync would do now, its ledger marks, held deletes and tombstones, and its
  recent log lines with their trace ids (services.platform.activity).
- "Find it" — search.py: any id or name.
- "Sync it again" — resync.py: through the ledger.
- "What has drifted apart?" — audit/: a bounded, read-only drift audit, its report in JSON and
  in words, kept in Redis, repaired only through the ledger.
- The JSON API over all of it and its table: api.py; the command `bitbylaw-ops`: cli.py (a
  client of that API, so it works wherever the engine's REST port is reachable).

Framework-free: the steps in src/steps/system/ops_*_step.py hand in the clients, `ctx.state`
and the ledger (`Systems`, built by src/glue/ops.py).
"""
