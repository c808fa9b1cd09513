"""The shard layout recorded in Redis: the first writer records it, a producer follows it (so a
chat server started with another REVERIE_SHARDS still writes where workers read), and state
from before sharding is never left behind unread. (Workers refuse another layout:
tests/worker/ops/test_reshard.py.)"""

from __future__ import annotations

import logging

import pytest

from producer import Producer, ProducerConfig
from producer.errors import LayoutMismatch
from producer.keys import Keys
from producer.layout import followable
from tests.conftest import uid

TURN = [{"role": "user", "content": "hi", "id": "m1"}]


def test_the_first_submit_records_the_layout(redis_url, redis_client, prefix) -> None:
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix)) as producer:
        assert redis_client.get(f"{prefix}:layout") is None
        producer.submit(uid("u"), "t", TURN)
    assert redis_client.get(f"{prefix}:layout") == b"shards=1 tags=0"


def test_a_producer_with_another_shard_count_follows_the_record(redis_url, redis_client, prefix, caplog) -> None:
    """Workers read the recorded layout: a producer configured for 4 shards writes there too."""
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix)) as producer:
        producer.submit(uid("u"), "t", TURN)
    user = uid("u")
    config = ProducerConfig(redis_url=redis_url, key_prefix=prefix, shards=4)
    with caplog.at_level(logging.WARNING, logger="reverie.producer"), Producer(config) as producer:
        producer.submit(user, "t", TURN)
        assert producer.keys.layout == "shards=1 tags=0"
    assert redis_client.llen(Keys(prefix).buffer(user, "t")) == 1
    assert not redis_client.exists(Keys(prefix, 4).buffer(user, "t"))
    assert "follows the recorded shard layout" in caplog.text


def test_sharding_over_unsharded_state_without_a_record_is_refused(redis_url, redis_client, prefix) -> None:
    """A deployment from before the record (state under the unsharded names, no p:layout): a
    sharded producer refuses (nothing written) and says to run reverie reshard."""
    redis_client.zadd(Keys(prefix).due_ss, {"old:t": 1})
    config = ProducerConfig(redis_url=redis_url, key_prefix=prefix, shards=4, on_unavailable="drop")
    with Producer(config) as p, pytest.raises(LayoutMismatch, match="reverie reshard 4"):
        p.submit(uid("u"), "t", TURN)
    assert sorted(k.decode() for k in redis_client.keys(f"{prefix}:*")) == [f"{prefix}:due_ss"]


def test_a_cluster_producer_cannot_follow_unsharded_names() -> None:
    with pytest.raises(LayoutMismatch, match="cannot run on a cluster"):
        followable(Keys("p", 16), "shards=1 tags=0", cluster=True)
    assert followable(Keys("p"), "shards=8 tags=1", cluster=True).shards == 8
