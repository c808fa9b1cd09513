"""The README's first command: ``reverie demo`` on embedded defaults, from a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_one_reflection_per_burst(tmp_path: Path) -> None:
    """No REVERIE_*/REDIS_URL: embedded Valkey, local Qdrant, offline extractor; exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_") and k != "REDIS_URL"}
    env["REVERIE_QDRANT_PATH"] = str(tmp_path / "qdrant")
    exe = Path(sys.executable).with_name("reverie")
    out = subprocess.run([str(exe), "demo"], capture_output=True, text=True, env=env, timeout=110, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "4 bursts → 4 reflections (one per burst)" in out.stdout
    assert "offline-verbatim (not an LLM)" in out.stdout
    assert "味噌ラーメン" in out.stdout
