"""End-to-end fixtures live in tests/e2e.py (shared by tests/steps and tests/reliability
through tests/conftest.py); the constants are re-exported here for the tests' imports."""

from tests.e2e import PROXY_TOKEN, WEBHOOK_ID, WEBHOOK_SECRET, stack_env  # noqa: F401
