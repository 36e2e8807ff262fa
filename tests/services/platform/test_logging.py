"""services.platform.logging: ctx.logger vs stdlib, structured data, and redaction of secrets."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import SecretStr

from services.platform.logging import get_service_logger, is_sensitive_key, redact, redact_mapping, redact_text


class RecordingLogger:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def info(self, message: str, data: Any = None) -> None:
        self.calls.append(("info", message, data))

    def warn(self, message: str, data: Any = None) -> None:
        self.calls.append(("warn", message, data))

    def error(self, message: str, data: Any = None) -> None:
        self.calls.append(("error", message, data))

    def debug(self, message: str, data: Any = None) -> None:
        self.calls.append(("debug", message, data))


class Ctx:
    def __init__(self, logger: Any) -> None:
        self.logger = logger


@pytest.mark.parametrize(
    "key",
    ["api_key", "X-Api-Key", "apiKey", "secretKey", "client_secret", "access_token", "Authorization",
     "password", "ADVOWARE_PASSWORD", "Signature", "X-Hmac-Authorization", "HMAC512Signature", "private_key", "Cookie"],
)
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize("key", ["id", "name", "entity_id", "lock_key", "fileStatus", "xaiCollections", 42])
def test_harmless_keys(key: Any) -> None:
    assert not is_sensitive_key(key)


def test_redact_mapping_masks_nested_values_without_mutating() -> None:
    payload = {
        "id": "d1",
        "headers": {"Authorization": "Bearer abc", "Content-Type": "application/json"},
        "items": [{"secretKey": "s1", "name": "hook"}, {"token": None}],
        "Password": "",
        "note": "connect to redis://:hunter22@host:6379/0 with Bearer eyJhbGciOi.payload.sig",
    }
    original = repr(payload)
    out = redact_mapping(payload)
    assert repr(payload) == original
    assert out["id"] == "d1"
    assert out["headers"] == {"Authorization": "***", "Content-Type": "application/json"}
    assert out["items"] == [{"secretKey": "***", "name": "hook"}, {"token": None}]
    assert out["Password"] == ""  # empty stays empty: nothing to hide, and shows it was unset
    assert "hunter22" not in out["note"] and "eyJhbGciOi" not in out["note"]
    assert "redis://:***@host:6379/0" in out["note"]


def test_redact_values() -> None:
    assert redact(SecretStr("x")) == "***"
    assert redact(b"\x00" * 10) == "<10 bytes>"
    assert redact(("a", {"apiKey": "k"})) == ["a", {"apiKey": "***"}]
    assert redact(5) == 5
    assert redact_text("Basic authentication failed") == "Basic authentication failed"
    assert redact_text("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic ***"
    assert redact_text("https://user:pw@crm.example/api") == "https://user:***@crm.example/api"
    assert redact_text("https://crm.example/api") == "https://crm.example/api"


def test_redact_mapping_extra_keys() -> None:
    assert redact_mapping({"iban": "DE02", "name": "x"}, extra_keys=("iban",)) == {"iban": "***", "name": "x"}


def test_logger_writes_through_ctx_logger_with_redacted_data() -> None:
    rec = RecordingLogger()
    log = get_service_logger("document_sync", Ctx(rec))
    log.info("plain")
    log.info("with fields", entity_id="d1", api_key="k")
    log.warning("careful", {"token": "t", "n": 1})
    log.warn("also warn")
    log.error("failed", error=ValueError("boom"))
    log.debug("details", payload={"password": "p"})
    assert rec.calls == [
        ("info", "plain", None),
        ("info", "with fields", {"entity_id": "d1", "api_key": "***"}),
        ("warn", "careful", {"token": "***", "n": 1}),
        ("warn", "also warn", None),
        ("error", "failed", {"error": "ValueError: boom"}),
        ("debug", "details", {"payload": {"password": "***"}}),
    ]


def test_bind_adds_fields() -> None:
    rec = RecordingLogger()
    log = get_service_logger("x", Ctx(rec)).bind(entity_id="e1", step="document_sync")
    log.info("hi", action="update")
    assert rec.calls == [("info", "hi", {"entity_id": "e1", "step": "document_sync", "action": "update"})]


def test_without_ctx_uses_stdlib_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bitbylaw")
    log = get_service_logger("espocrm")
    log.info("loaded", entity_id="d1", secret="s")
    log.warning("no fields")
    records = [r for r in caplog.records if r.name == "bitbylaw.espocrm"]
    assert [r.levelno for r in records] == [logging.INFO, logging.WARNING]
    assert records[0].getMessage() == 'loaded {"entity_id": "d1", "secret": "***"}'
    assert records[0].data == {"entity_id": "d1", "secret": "***"}  # type: ignore[attr-defined]
    assert records[1].getMessage() == "no fields"


def test_broken_ctx_logger_falls_back_to_stdlib(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def info(self, message: str, data: Any = None) -> None:
            raise RuntimeError("otel down")

    caplog.set_level(logging.INFO, logger="bitbylaw")
    get_service_logger("svc", Ctx(Broken())).info("still logged")
    assert any(r.name == "bitbylaw.svc" and r.getMessage() == "still logged" for r in caplog.records)


def test_ctx_logger_with_only_warning_method() -> None:
    class StdStyle:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def warning(self, message: str, data: Any = None) -> None:
            self.seen.append(message)

    logger = StdStyle()
    get_service_logger("svc", Ctx(logger)).warn("w")
    assert logger.seen == ["w"]


def test_messages_are_redacted_too() -> None:
    rec = RecordingLogger()
    get_service_logger("svc", Ctx(rec)).info("calling with Bearer sk-live-1234567890")
    assert rec.calls[0][1] == "calling with Bearer ***"
