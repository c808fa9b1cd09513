"""What the sync and asyncio producers share, besides the pure core (``producer.core``): the key
layout they follow, the ``on_unavailable`` policy, the status and receipt decoding, and the
throttled warnings. ``Producer`` and ``AsyncProducer`` add the I/O."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from producer import core, layout
from producer import status as status_core
from producer.config import ProducerConfig
from producer.connect import UNAVAILABLE, is_cluster, where
from producer.errors import ProducerUnavailable, ShardClosed
from producer.keys import Keys
from producer.throttle import Throttled
from schemas.messages import SubmitReceipt, SubmitRequest
from schemas.status import ThreadStatus, UserStatus

WARM_CONNECTIONS = 10
"""Default connections ``warm`` opens: what a chat server's concurrent requests need at once."""
log = logging.getLogger("reverie.producer")
UNAVAILABLE_OR_CLOSED = (*UNAVAILABLE, ShardClosed)
"""What a submit turns into the ``on_unavailable`` policy's answer."""
Call = tuple[str, str, list[str | int]]
"""A submit ready to send: user, thread and the script's ARGV (KEYS follow the layout at send time)."""


def client_kwargs(cfg: ProducerConfig) -> dict[str, Any]:
    # No retries: a chat request must not wait for reconnect loops; the policy decides.
    return {
        "socket_timeout": cfg.timeout_s,
        "socket_connect_timeout": cfg.timeout_s,
        "health_check_interval": 0,
    }


class ProducerBase:
    def __init__(self, config: ProducerConfig | None, client: Any) -> None:
        self.config = config or ProducerConfig()
        self.cluster = self.config.cluster or is_cluster(client)
        self.keys = Keys(self.config.key_prefix, self.config.shards, tagged=self.cluster or None)
        self._layout_checked = False
        self._spool: deque[Call] = deque()
        self._dropped_log = Throttled(log, self.config.log_interval_s)
        self._spooled_log = Throttled(log, self.config.log_interval_s)
        self._unreplicated_log = Throttled(log, self.config.log_interval_s)

    def _prepare(
        self,
        user_id: object,
        thread_id: object,
        messages: object,
        after_seconds: object,
        max_wait: object,
        profile: object,
    ) -> tuple[SubmitRequest, Call]:
        request = core.build_request(
            user_id,
            thread_id,
            messages,
            after_seconds=after_seconds,
            max_wait=max_wait,
            profile=profile,
            profiles=self.config.profiles,
        )
        argv = core.submit_args(
            request, default_after_s=self.config.after_seconds, default_max_wait_s=self.config.max_wait_s
        )
        return request, (request.user_id, request.thread_id, argv)

    def _where(self) -> str:
        """Where the Redis this producer talks to is; no credentials."""
        return where(self.client)  # type: ignore[attr-defined]

    def _adopt(self, recorded: str) -> None:
        """Follow the deployment's recorded layout (``producer.layout``)."""
        if recorded != self.keys.layout:
            followed = layout.followable(self.keys, recorded, self.cluster)
            log.warning(
                "reverie producer follows the recorded shard layout",
                extra={"recorded": recorded, "configured": self.keys.layout},
            )
            self.keys = followed
        self._layout_checked = True

    def _receipt(self, reply: Any, replicas: int | None) -> SubmitReceipt:
        if replicas is not None and replicas < 1:
            self._unreplicated_log.warn("reverie submits not confirmed by a replica within replica_wait_ms")
        return core.decode_reply(reply, replicas)

    def _closed(self) -> ShardClosed:
        return ShardClosed(f"Redis at {self._where()}: this user's shard is being moved by reverie reshard; retry")

    def _status_unavailable(self, err: BaseException) -> ProducerUnavailable:
        # A read has no "dropped" answer: whatever the submit policy, status raises.
        return ProducerUnavailable(f"Redis unreachable at {self._where()}: {type(err).__name__}")

    def _statuses(
        self, user_id: str, thread_ids: list[str], total: int, reply: list[Any], whole_user: bool
    ) -> ThreadStatus | UserStatus:
        threads, now_ms = status_core.decode_replies(user_id, thread_ids, reply)
        if not whole_user:
            return threads[0]
        return UserStatus(user_id=user_id, threads=threads, total_threads=total, now_ms=now_ms)

    @property
    def spooled(self) -> int:
        """Submits waiting in the spool (policy ``spool``)."""
        return len(self._spool)

    def _unavailable(self, request: SubmitRequest, err: BaseException, call: Call) -> SubmitReceipt:
        if self.config.on_unavailable == "raise":
            if isinstance(err, ShardClosed):
                raise err
            raise ProducerUnavailable(f"Redis unreachable at {self._where()}: {type(err).__name__}") from err
        ids = {"user_id": request.user_id, "thread_id": request.thread_id, "error": type(err).__name__}
        if self.config.on_unavailable == "spool" and len(self._spool) < self.config.spool_max:
            self._spool.append(call)
            self._spooled_log.warn("reverie submits spooled: redis unreachable", spooled=len(self._spool), **ids)
            return core.spooled_receipt()
        self._dropped_log.warn("reverie submits dropped: redis unreachable", **ids)
        return core.dropped_receipt()
