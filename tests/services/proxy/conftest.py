"""Fixtures of the proxy tests: a complete production environment without proxy callers."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest


@pytest.fixture
def prod_env(tmp_path: Path) -> dict[str, str]:
    """A valid production environment (https URLs, webhook authentication) with the proxy off."""
    sa_file = tmp_path / "sa.json"
    sa_file.write_text(json.dumps({"type": "service_account", "client_email": "x@y.iam", "private_key": "PEM"}))
    return {
        "APP_MODE": "production",
        "APP_ENV_FILE": "/nonexistent/.env",
        "ESPOCRM_API_BASE_URL": "https://crm.example.com/api/v1",
        "ESPOCRM_API_KEY": "espo-key",
        "ESPOCRM_WEBHOOK_SECRETS": "hook-1:hook-secret-0123456789abcdef0123456789",
        "ADVOWARE_API_BASE_URL": "https://connector.example.net/",
        "ADVOWARE_TOKEN_URL": "https://gateway.example.net/api/v1/Token",
        "ADVOWARE_APP_ID": "app-1",
        "ADVOWARE_API_KEY": base64.b64encode(b"advoware-api-key").decode(),
        "ADVOWARE_KANZLEI": "k1",
        "ADVOWARE_DATABASE": "db1",
        "ADVOWARE_USER": "u1",
        "ADVOWARE_PASSWORD": "pw",
        "XAI_API_KEY": "xai-key",
        "XAI_MANAGEMENT_KEY": "xai-management-key",
        "GOOGLE_SERVICE_ACCOUNT_FILE": str(sa_file),
        "CALENDAR_MAPPING": "MM:mm@firm.example",
    }
