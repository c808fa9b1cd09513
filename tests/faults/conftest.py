"""Fixtures for fault tests that run Reverie in separate worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.procs import settings_env
from tests.support.scripted_llm import ScriptedLLM


@pytest.fixture
def worker_env(redis_url: str, prefix: str, tmp_path: Path, scripted: ScriptedLLM) -> dict[str, str]:
    """``REVERIE_*`` for a worker process on this test's prefix, local Qdrant and the scripted LLM.
    Leases and in-flight deadlines are short so a killed worker's claims come back quickly."""
    return settings_env(
        redis_url=redis_url,
        key_prefix=prefix,
        qdrant_path=tmp_path / "qdrant",
        model=scripted.model,
        llm_api_base=scripted.base_url,
        llm_api_key="sk-test-not-a-secret",
        after_seconds=0.3,
        lease_s=2,
        inflight_timeout_s=2,
        dispatch_interval_s=0.05,
        llm_timeout_s=10,
        log_level="WARNING",
    )
