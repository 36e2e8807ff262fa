"""Row P5: how engine 0.8.3 reads its config file, through the stand-in and the real motia worker.

Paths are under `engine/src/` of iii-hq/iii at tag iii/v0.8.3. The worker runs the steps of
`process_steps/` (GET /p/who).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from iii_local.config import EngineConfigError, parse_config
from iii_local.testing import PROJECT_ROOT, MotiaTester

STEPS = Path(__file__).parent / "process_steps"

RAW = """\
# P5: ${P5_IN_COMMENT} - a variable in a comment is expanded (and must exist) like any other.
port: ${P5_WORKER_PORT}
not_an_engine_key:          # unknown top-level keys are ignored
  nested: [1, 2]
modules:
  - class: modules::api::RestApiModule
    config: ${P5_REST_CONFIG}
  - class: modules::state::StateModule
    config:
      adapter:
        class: modules::state::adapters::KvStore
  - class: modules::shell::ExecModule
    config:
      exec:
        - exec env III_URL=ws://127.0.0.1:${P5_WORKER_PORT} ${P5_PY} ${P5_ROOT}/scripts/run_worker.py -- ${P5_PY} -m motia.cli run --dir ${P5_ROOT}/tests/iii_local/conformance/${P5_STEPS_NAME:process_steps}
local_engine:
  console_port: 0
"""


class RawConfigTester(MotiaTester):
    """A MotiaTester whose engine reads the raw text above instead of a generated config."""

    def write_config(self) -> Path:
        path = self.workdir / "iii-config.yaml"
        path.write_text(RAW)
        return path


def _tester(**overrides: str) -> RawConfigTester:
    t = RawConfigTester(STEPS)
    t.env = {
        "P5_IN_COMMENT": "anything",
        "P5_WORKER_PORT": str(t.worker_port),
        "P5_REST_CONFIG": f"{{port: {t.rest_port}, host: 127.0.0.1, default_timeout: 5000}}",
        "P5_PY": sys.executable,
        "P5_ROOT": str(PROJECT_ROOT),
        **overrides,
    }
    return t


async def test_p5_variables_are_replaced_in_the_raw_text_and_unknown_keys_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """P5 — modules/config.rs 47-53 (`EngineConfig`: `port` and `modules`, no
    `deny_unknown_fields`, so other top-level keys are ignored), 65-91 (`expand_env_vars`:
    `${VAR}` / `${VAR:default}` replaced by regex in the whole text, comments included; a
    variable with neither value nor default panics), 95-110 (`config_file`: expand, then
    serde_yaml). A variable holding a YAML flow mapping becomes the REST module's config.
    An unknown module class, unlike an unknown key, stops the engine (config.rs 261-277)."""
    monkeypatch.delenv("P5_STEPS_NAME", raising=False)
    t = _tester()
    await t.start()
    try:
        r = await t.get("/p/who")
        assert r.status == 200 and isinstance(r.json()["pid"], int), "the worker did not come up from the expanded exec line"
    finally:
        await t.stop()

    missing = _tester()
    del missing.env["P5_IN_COMMENT"]
    monkeypatch.delenv("P5_IN_COMMENT", raising=False)
    with pytest.raises(RuntimeError, match="P5_IN_COMMENT"):
        await missing.start(timeout=20)
    with pytest.raises(EngineConfigError, match="Unknown module class"):
        parse_config({"modules": [{"class": "modules::logging::LoggingModule"}]})
