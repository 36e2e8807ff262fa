"""Today in the engine's numbering (UTC; weekdays 1-7 with Sunday = 1, the `cron` crate's)."""

from datetime import UTC, datetime

NOW = datetime.now(UTC)
TODAY_DOW = NOW.isoweekday() % 7 + 1
OTHER_DOW = (TODAY_DOW + 2) % 7 + 1  # three days from today
TODAY_DOM = NOW.day
