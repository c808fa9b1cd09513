"""The tree keeps its shape: the layer contracts hold (import-linter, also run by ``.ci/run``),
and no module of product code grows past 400 lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT_DIR

PRODUCT = ("producer", "schemas", "worker")
MAX_LINES = 400


def test_no_product_module_is_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT_DIR)): len(path.read_text(encoding="utf-8").splitlines())
        for package in PRODUCT
        for path in (ROOT_DIR / package).rglob("*.py")
    }
    assert len(sizes) > 50, "the walk found the packages"
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_layer_contracts_hold() -> None:
    """``lint-imports`` exits non-zero on any broken contract (a violation fails CI)."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout
