"""``ProducerConfig.from_settings``: the one mapping from the workers' settings to a producer,
with overrides, and a clear error when no Redis is named."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from producer import ProducerConfig
from schemas.settings import Settings


def test_the_shared_fields_come_from_the_settings_and_overrides_win() -> None:
    s = Settings(
        redis_url=SecretStr("redis://127.0.0.1:6390/2"),
        key_prefix="p1",
        redis_timeout_s=0.5,
        after_seconds=4,
        max_wait_s=40,
        on_unavailable="spool",
        shards=4,
        replica_wait_ms=100,
    )
    config = ProducerConfig.from_settings(s)
    assert (config.redis_url, config.key_prefix, config.timeout_s) == ("redis://127.0.0.1:6390/2", "p1", 0.5)
    assert (config.after_seconds, config.max_wait_s, config.on_unavailable) == (4, 40, "spool")
    assert (config.cluster, config.shards, config.replica_wait_ms, config.profiles) == (False, 4, 100, None)
    other = ProducerConfig.from_settings(s, redis_url="redis://127.0.0.1:6391/0", timeout_s=5.0)
    assert (other.redis_url, other.timeout_s, other.key_prefix) == ("redis://127.0.0.1:6391/0", 5.0, "p1")


def test_no_redis_named_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REVERIE_REDIS_URL", raising=False)
    with pytest.raises(ValueError, match="REVERIE_REDIS_URL"):
        ProducerConfig.from_settings(Settings(redis_url=None))
