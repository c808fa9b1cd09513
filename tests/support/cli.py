"""Run the real ``reverie`` CLI in a fresh interpreter, with only the ``REVERIE_*`` variables a
test gives (the rest of the environment kept), for checks of exit codes and stderr."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT_DIR


def run_reverie(*args: str, env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_")} | env
    return subprocess.run(
        [sys.executable, "-c", "from worker.ops.cli import main; main()", *args],
        cwd=ROOT_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
