"""The drift audit: a read-only comparison of EspoCRM, xAI, Advoware and Google that finds what
disagrees, bounded in API calls and time, reported as JSON and in words, kept in Redis, and
repaired only through the sync ledger.

- model.py: findings (FindingType, one per rule below), checks, the report and its words;
- collections.py, parties.py, calendar.py: the rules, pure functions over fetched pages
  (unit-tested without I/O in tests/services/ops/);
- executor.py: `run_audit` pages through the systems within the budget and applies the rules;
- store.py: the last report, the history of summaries and the repairs queued per report;
- repair.py: `repair_findings` queues the fixes (and the one record correction they may make).
- runs.py: what the steps and the cron call: `run_and_keep`, `repair_last` (findings of the last
  report) and `audit_overview`.

Run by the nightly cron step (OPS_AUDIT_CRON), `POST /ops/audit/run` and `bitbylaw-ops audit`.
"""
