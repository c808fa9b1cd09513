"""Process commands tell a supervisor the truth: a worker that cannot start exits non-zero, with
one line that says why, and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from tests.conftest import ROOT_DIR


def _reverie(args: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("reverie")
    full = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_")} | env
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full, timeout=timeout, cwd=ROOT_DIR)


@pytest.fixture
def locked_folder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A local-mode Qdrant folder another process (this one) has open, as a running worker would."""
    folder = tmp_path / "qdrant"
    client = QdrantClient(path=str(folder))
    yield folder
    client.close()


@pytest.mark.timeout(150)
def test_a_second_worker_on_a_local_folder_exits_1_with_one_clear_line(locked_folder, redis_url, prefix) -> None:
    env = {"REVERIE_REDIS_URL": redis_url, "REVERIE_KEY_PREFIX": prefix, "REVERIE_QDRANT_PATH": str(locked_folder)}
    done = _reverie(["worker"], env)
    assert done.returncode == 1
    [line] = [x for x in done.stderr.splitlines() if x.strip()]
    assert line.startswith("error: the local-mode Qdrant folder") and "in use by another process" in line
    assert "REVERIE_QDRANT_URL" in line and "Traceback" not in done.stderr


@pytest.mark.timeout(150)
def test_health_and_demo_say_the_same_about_a_busy_folder(locked_folder, redis_url, prefix) -> None:
    env = {"REVERIE_REDIS_URL": redis_url, "REVERIE_KEY_PREFIX": prefix, "REVERIE_QDRANT_PATH": str(locked_folder)}
    health = _reverie(["health"], env)
    assert "qdrant" in health.stdout and "in use by another process" in health.stdout
    assert "Traceback" not in health.stderr + health.stdout
    demo = _reverie(["demo", "--timeout", "20"], env)
    assert demo.returncode == 1 and "in use by another process" in demo.stderr
    assert "Traceback" not in demo.stderr
