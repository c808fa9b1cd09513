"""Run the real ``reverie`` CLI: in a fresh interpreter, with only the ``REVERIE_*`` variables a
test gives (the rest of the environment kept), for checks of exit codes and stderr; or in this
process through typer's runner (``in_process``), for everything else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from typer.testing import CliRunner

from tests.conftest import ROOT_DIR


def in_process(env: dict[str, str]) -> Callable[..., Any]:
    """``invoke(*args, **extra_env)``: the CLI with ``env`` (plus ``extra_env``), exceptions raised."""
    from worker.ops.cli import cli

    runner = CliRunner()

    def invoke(*args: str, **extra_env: str) -> Any:
        return runner.invoke(cli, list(args), env=env | extra_env, catch_exceptions=False)

    return invoke


def json_of(result: Any) -> Any:
    """The JSON a successful command printed."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


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
