"""Platform pieces shared by every sync domain: settings, the per-worker client container,
Redis, entity locks, logging with redaction, shared models and the sync ledger.

Modules here are imported absolutely (`services.platform.logging`, `services.platform.redis`);
their names shadow nothing because the project never puts this folder on sys.path.
"""
