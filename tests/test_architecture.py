"""The architecture rule (pyproject's import-linter contracts): tui/ never imports the ML stack, not
even through an engine module, and engine/ never imports Textual. `make test` runs `lint-imports`;
these tests check that the contracts hold and that they really catch a heavy import."""

import shutil
import subprocess
import sys
from pathlib import Path

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


def test_a_heavy_import_in_the_tui_breaks_the_build(tmp_path):
    root = _copy_tree(tmp_path)
    widget = root / "tui" / "widgets" / "bullets.py"
    widget.write_text(widget.read_text() + "\n\ndef _sneaky():\n    import torch  # noqa: F401\n")
    proc = _lint(root)
    assert proc.returncode != 0
    assert "tui is not allowed to import torch" in proc.stdout


def test_a_heavy_import_reached_through_the_engine_breaks_it_too(tmp_path):
    root = _copy_tree(tmp_path)
    runs = root / "engine" / "runs.py"  # the TUI imports engine.runs
    runs.write_text(runs.read_text() + "\n\ndef _sneaky():\n    import transformers  # noqa: F401\n")
    proc = _lint(root)
    assert proc.returncode != 0
    assert "tui is not allowed to import transformers" in proc.stdout


def test_textual_in_the_engine_breaks_the_build(tmp_path):
    root = _copy_tree(tmp_path)
    (root / "engine" / "sneaky.py").write_text("from textual.app import App  # noqa: F401\n")
    proc = _lint(root)
    assert proc.returncode != 0
    assert "engine is not allowed to import textual" in proc.stdout
