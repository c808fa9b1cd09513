"""The run's lock and its checkpoint in Redis.

One re-embed per namespace: the lock is a key with a random token and a TTL (redis-py's
``Lock``), renewed by a thread while the run lives, so a killed process frees it after
``LOCK_TTL_S``. Every checkpoint write goes through ``checkpoint.lua``, which writes only while
the token is still ours: a run that stalled past its TTL cannot overwrite its successor's state.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any, ClassVar

import redis

from producer.scripts import ScriptSet
from producer.text import as_text
from schemas.reembed import ReembedState
from worker.features.reembed.errors import LockLost, ReembedBusy
from worker.features.reembed.keys import lock_key, old_key, state_key
from worker.pipeline.keys import WorkerKeys

LOCK_TTL_S = 30.0


class _Scripts(ScriptSet):
    PACKAGE: ClassVar[str] = "worker.features.reembed"
    NAMES: ClassVar[tuple[str, ...]] = ("checkpoint",)

    checkpoint: Any


def load_state(client: redis.Redis, keys: WorkerKeys, namespace: str) -> ReembedState | None:
    raw = client.get(state_key(keys, namespace))
    return None if raw is None else ReembedState.decode(raw)


def old_collections(client: redis.Redis, keys: WorkerKeys, namespace: str) -> list[str]:
    return sorted(as_text(m) for m in client.smembers(old_key(keys, namespace)))


class Checkpoint:
    """Holds the namespace's lock for one run (a context manager) and writes its state."""

    def __init__(self, client: redis.Redis, keys: WorkerKeys, namespace: str, *, ttl_s: float = LOCK_TTL_S) -> None:
        self.client, self.keys, self.namespace = client, keys, namespace
        self.token = uuid.uuid4().hex
        self._lock = client.lock(lock_key(keys, namespace), timeout=ttl_s, thread_local=False)
        self._ttl_s = ttl_s
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._scripts = _Scripts(client)
        self._keeper: threading.Thread | None = None

    def __enter__(self) -> Checkpoint:
        if not self._lock.acquire(blocking=False, token=self.token):
            ttl_ms = self.client.pttl(lock_key(self.keys, self.namespace))
            raise ReembedBusy(
                f"a re-embed of namespace {self.namespace!r} is running (its lock expires "
                f"{max(ttl_ms, 0) / 1000:.0f} s after its process stops); run the command again then to continue it"
            )
        self._keeper = threading.Thread(target=self._renew, name="reverie-reembed-lock", daemon=True)
        self._keeper.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(5)
        if not self._lost.is_set():
            with contextlib.suppress(redis.exceptions.LockError):  # expired meanwhile: nothing to release
                self._lock.release()

    def _renew(self) -> None:
        while not self._stop.wait(self._ttl_s / 3):
            try:
                self._lock.reacquire()
            except redis.exceptions.LockNotOwnedError:
                self._lost.set()
                return
            except redis.exceptions.RedisError:
                continue  # try again before the TTL runs out

    def check(self) -> None:
        """Raise ``LockLost`` if the lock could not be kept (checked between batches)."""
        if self._lost.is_set():
            raise LockLost(f"the re-embed lock of namespace {self.namespace!r} was lost; run the command again")

    def load(self) -> ReembedState | None:
        return load_state(self.client, self.keys, self.namespace)

    def save(self, state: ReembedState | None, *, keep_old: str = "") -> None:
        """Write ``state`` (None: delete it) and optionally add a collection to the kept old ones."""
        written = self._scripts.checkpoint(
            keys=[
                lock_key(self.keys, self.namespace),
                state_key(self.keys, self.namespace),
                old_key(self.keys, self.namespace),
            ],
            args=[self.token, "" if state is None else state.encode(), keep_old],
        )
        if not written:
            self._lost.set()
            self.check()

    def forget_old(self, names: list[str]) -> None:
        if names:
            self.client.srem(old_key(self.keys, self.namespace), *names)
