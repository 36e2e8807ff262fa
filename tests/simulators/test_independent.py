"""The simulators are independent test doubles.

Rule 1: no module under `simulators/` imports the project's code (`services`, `src`),
except the three that wire the sandbox to the project's settings (`sandbox.py`,
`__main__.py`, `runner.py`). A simulator that reused the client's path table, field
names or webhook signing would agree with a wrong client by construction.

Rule 2: no simulator module is over 500 lines (split by concern instead).

Imports are read with `ast` (every `import`/`from ... import`, also inside functions and
`if TYPE_CHECKING:` blocks, and `importlib.import_module("...")`/`__import__("...")` with
a literal name), so a comment or a string mentioning `services` cannot make the check pass
or fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SIMULATORS = Path(__file__).resolve().parents[2] / "simulators"
WIRING = {"sandbox.py", "__main__.py", "runner.py"}
PROJECT_PACKAGES = {"services", "src"}
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(p for p in SIMULATORS.rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(source: str) -> set[str]:
    """Absolute names of every module `source` imports (relative imports are skipped: they
    stay inside `simulators`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def project_imports(source: str) -> set[str]:
    return {n for n in imported_modules(source) if n.split(".")[0] in PROJECT_PACKAGES}


def test_the_check_sees_every_kind_of_import() -> None:
    """The parser is not blind: each form of importing the project is caught; text is not."""
    caught = [
        "import services.espocrm",
        "from services.clients import espocrm_webhooks",
        "from src.steps import x",
        "def f():\n    from services import config\n",
        "import importlib\nimportlib.import_module('services.clients')",
        "__import__('src')",
        "if True:\n    import services as s\n",
    ]
    for source in caught:
        assert project_imports(source), source
    ignored = [
        '"""uses services.advoware_paths"""',
        "# from services import x",
        "from simulators.base import make_app",
        "from .services import x",
        "import servicesx",
    ]
    for source in ignored:
        assert not project_imports(source), source


def test_simulator_modules_exist() -> None:
    names = {p.relative_to(SIMULATORS).as_posix() for p in _modules()}
    for expected in ("espocrm/__init__.py", "advoware/__init__.py", "google_calendar/__init__.py", "xai/__init__.py", "base.py"):
        assert expected in names


def _doubles() -> list[Path]:
    """Every simulator module except the ones that wire the sandbox to the project's settings."""
    return [p for p in _modules() if not (p.parent == SIMULATORS and p.name in WIRING)]


def test_only_the_wiring_modules_are_exempt() -> None:
    doubles = set(_doubles())
    exempt = [p for p in _modules() if p not in doubles]
    assert all(p.parent == SIMULATORS and p.name in WIRING for p in exempt), exempt
    assert len(doubles) >= 10


@pytest.mark.parametrize("path", _doubles(), ids=lambda p: p.relative_to(SIMULATORS).as_posix())
def test_simulator_does_not_import_the_project(path: Path) -> None:
    found = project_imports(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(SIMULATORS)} imports the code it is meant to test: {sorted(found)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(SIMULATORS).as_posix())
def test_simulator_module_is_at_most_500_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SIMULATORS)} has {lines} lines (max {MAX_LINES}): split it by concern"
