"""The architecture rule (pyproject's import-linter contracts): tui/ never imports the ML stack, not
even through an engine module, and engine/ never imports Textual. `make test` runs `lint-imports`;
these tests check that the contracts hold and that they really catch a heavy import."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT)], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    root.mkdir()
    for package in ("engine", "tui", "themes"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_contracts_hold():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


@pytest.mark.parametrize("module, heavy", [
    ("tui/widgets/bullets.py", "torch"),  # in the TUI itself
    ("engine/runs.py", "transformers"),  # reached through an engine module the TUI imports
])
def test_a_heavy_import_the_tui_reaches_breaks_the_build(tmp_path, module, heavy):
    root = _copy_tree(tmp_path)
    path = root / module
    path.write_text(path.read_text() + f"\n\ndef _sneaky():\n    import {heavy}  # noqa: F401\n")
    proc = _lint(root)
    assert proc.returncode != 0
    assert f"tui is not allowed to import {heavy}" in proc.stdout


def test_textual_in_the_engine_breaks_the_build(tmp_path):
    root = _copy_tree(tmp_path)
    (root / "engine" / "sneaky.py").write_text("from textual.app import App  # noqa: F401\n")
    proc = _lint(root)
    assert proc.returncode != 0
    assert "engine is not allowed to import textual" in proc.stdout
