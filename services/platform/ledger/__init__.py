"""The sync ledger: the project's own record of delivery, retries and dead letters.

The engine's queue is only a nudge (iii 0.8.3: the builtin adapter ignores per-step
retries and loses in-flight jobs at a crash; the Redis adapter is publish/subscribe and
stores nothing; see ../shared/spec/iii-engine-0.8.3-semantics.md rows Q2-Q5, R1-R2).
The ledger in Redis (run with `appendonly yes`) is the record of "this entity needs a
sync":

- A *mark* per (kind, entity id) (`services.platform.ledger.policies.SyncKind`; one
  `SyncPolicy` per kind, declared once in POLICIES) holds a monotonically increasing
  `seq` (one global counter), the latest event payload (topic + data), the failed
  attempts, the last error, timestamps and a state: pending, retrying or dead.
- Webhooks mark every accepted item (one round trip) BEFORE answering 200, then enqueue
  the event tagged `data["ledger"] = {"kind", "seq"}`. Follow-up events and reconciler
  finds are marked before they are enqueued too.
- A handler (`run_marked`) claims the mark (`begin`), runs the sync from the mark's
  latest payload under the kind's time-box, and `complete`s it: the mark is deleted only
  when its seq is still the one the claim saw; a webhook that arrived during the sync
  keeps it, due now, and it is re-enqueued at once. Failures reschedule it with the
  kind's backoff (`fail`); a busy entity lock reschedules without counting (`busy`);
  exhausted or permanent failures move it to the dead list and record the failure on
  the entity (services.platform.ledger.hooks). Handlers never raise for a sync failure.
- The sweeper cron (`sweep`, every LEDGER_SWEEP_CRON) re-enqueues due marks in bounded
  batches. Duplicates are cheap: a tagged event whose mark is gone, dead or being run
  elsewhere returns without an API call.

Invariants (tests/services/platform/ledger/test_store.py, test_stateful.py):
1. A live mark (pending/retrying) is in exactly `due:{kind}`; a dead one exactly in
   `dead:{kind}`; `retrying:{kind}` holds exactly the live marks in state retrying.
2. A mark is deleted only by `complete` of a claim that saw its current seq: no mark
   recorded after a run began is ever cleared by that run.
3. At most one live claim per mark: `begin` refuses while another claim's lease runs;
   a claim whose lease ran out (its worker died) is taken over and counts as a failed
   attempt, so poison work ends in the dead list instead of looping.
4. Every live mark is due at a finite time: the grace of a fresh mark, the backoff of a
   retry, the lease of a run or of a sweeper hand-out. So a mark whose event was lost
   (engine crash, pub/sub without subscriber, dead worker) is re-enqueued by the sweeper.
5. `attempts` never exceeds the kind's max_attempts (+1 when a newer payload arrived
   during the last failed run); `busy` never counts.
6. `due_batch` hands a due mark to one sweeper only (atomic lease).
7. Dead marks are revived only by a new webhook/follow-up/adopted event or by `replay`;
   reconcilers (`revive=False`) leave them dead.

Keys (prefix LEDGER_KEY_PREFIX, default `ledger`): see services.platform.ledger.scripts.
"""

from services.platform.ledger.glue import (
    ContextLike,
    OnDead,
    RunOutcome,
    RunReport,
    Work,
    enqueue_marked,
    mark_and_enqueue,
    run_marked,
    sweep,
)
from services.platform.ledger.policies import POLICIES, SyncKind, SyncPolicy, kind_for_topic
from services.platform.ledger.store import (
    TAG,
    BeginOutcome,
    BeginResult,
    Claim,
    CompleteOutcome,
    CompleteResult,
    FailOutcome,
    FailResult,
    Ledger,
    LedgerError,
    MarkInfo,
    MarkOutcome,
    MarkResult,
    Once,
    OnceHeld,
    read_tag,
    tag_event,
    untagged,
)

__all__ = [
    "POLICIES",
    "TAG",
    "BeginOutcome",
    "BeginResult",
    "Claim",
    "CompleteOutcome",
    "CompleteResult",
    "ContextLike",
    "FailOutcome",
    "FailResult",
    "Ledger",
    "LedgerError",
    "MarkInfo",
    "MarkOutcome",
    "MarkResult",
    "OnDead",
    "Once",
    "OnceHeld",
    "RunOutcome",
    "RunReport",
    "SyncKind",
    "SyncPolicy",
    "Work",
    "enqueue_marked",
    "kind_for_topic",
    "mark_and_enqueue",
    "read_tag",
    "run_marked",
    "sweep",
    "tag_event",
    "untagged",
]
