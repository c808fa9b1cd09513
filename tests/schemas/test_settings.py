"""Settings are validated at startup, naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.settings import Settings


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"REVERIE_AFTER_SECONDS": "-1"}, "after_seconds"),
        ({"REVERIE_MAX_WAIT_S": "0"}, "max_wait_s"),
        ({"REVERIE_KEY_PREFIX": "bad:prefix"}, "key_prefix"),
        ({"REVERIE_EMBEDDING_MODEL": "hash-3"}, "hash-<dims>"),
        ({"REVERIE_OVERLAP_POLICY": "sometimes"}, "overlap_policy"),
        ({"REVERIE_WORKER_CONCURRENCY": "0"}, "worker_concurrency"),
        ({"REVERIE_AFTER_SECONDS": "60", "REVERIE_MAX_WAIT_S": "10"}, "max_wait_s must be at least"),
    ],
)
def test_out_of_range_settings_are_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert field in str(info.value)


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passwords in URLs and API keys never appear in the settings' repr."""
    monkeypatch.setenv("REVERIE_REDIS_URL", "redis://user:hunter2@127.0.0.1:6379/0")
    monkeypatch.setenv("REVERIE_LLM_API_KEY", "sk-supersecret")
    text = repr(Settings())
    assert "hunter2" not in text and "sk-supersecret" not in text


def test_redis_url_falls_back_to_redis_url_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REVERIE_REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    assert Settings().resolved_redis_url() == "redis://127.0.0.1:6379/3"
