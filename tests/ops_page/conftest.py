"""Fixtures of the operators' page tests: the console's headless Chromium and Playwright
(tests/console/conftest.py: skipped without them, failed in CI), the real stack (tests/e2e.py),
and where screenshots go: docs/ when CONSOLE_SCREENSHOTS=1 (the README shows them), else a
temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.console.conftest import browser, page  # noqa: F401 (fixtures)

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="session")
def ops_shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("CONSOLE_SCREENSHOTS") == "1":
        return DOCS
    return tmp_path_factory.mktemp("ops-page-shots")
