"""Auto-batching of the asyncio producer's submits: every submit started while the event loop
runs one step (100 chat sessions answering at once) goes to Redis in one pipeline, one write and
one read, instead of one round trip each. Submits that arrive while a batch is in flight form the
next (two in flight at most: the loop prepares one batch while Redis runs the other). A submit
made while nothing is in flight goes at once, alone, as a plain ``EVALSHA``: a lone submit costs
what it did before batching.

Each submit keeps its own contract: its own reply or error (a script error, ``NOSCRIPT`` handled
by loading the script and resending only those), its own failure policy (an unreachable Redis
fails each submit of the batch, and each applies ``on_unavailable``), the producer's timeout
counted from its own call (a submit whose time ran out before its batch left is not sent at
all), and order: a thread's submits leave in the order they were made, and while one of them is
in flight the next waits for it, so they never race on two connections. On Redis Cluster a batch
is split by node, one pipeline each, sent together: a node that is down fails only the submits
it serves. With ``replica_wait_ms`` one ``WAIT 1 <ms>`` follows each node's submits in the same
pipeline (``WAIT`` covers every earlier write of that connection)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from producer.connect import is_cluster

MAX_BATCH = 512
"""Submits per pipeline at most; more waiting go in the next one."""
MAX_FLIGHTS = 2
"""Pipelines in flight at once: while Redis runs one batch's scripts the loop builds the next."""
Result = tuple[Any, int | None]
"""A submit's script reply and, with ``replica_wait_ms``, the replicas that acknowledged."""


@dataclass(slots=True)
class Pending:
    keys: list[str]
    argv: list[Any]
    future: asyncio.Future[Result]
    node: Any = field(default=None)


class SubmitPipeline:
    """Batches ``EVALSHA`` of one script on one asyncio client (``Redis`` or ``RedisCluster``)."""

    def __init__(
        self,
        client: Any,
        script: Any,
        *,
        wait_ms: int = 0,
        max_batch: int = MAX_BATCH,
        max_flights: int = MAX_FLIGHTS,
    ) -> None:
        self.client = client
        self.script = script
        self.wait_ms = wait_ms
        self.max_batch = max_batch
        self.max_flights = max_flights
        self.cluster = is_cluster(client)
        self._queue: list[Pending] = []
        self._busy: dict[str, int] = {}
        """Thread keys with a submit in flight, and how many: a thread's next submit waits."""
        self._flights: set[asyncio.Task[None]] = set()
        self._inflight = 0
        """Batches in flight, and a lone submit sent at once."""
        self._kick_scheduled = False
        self.batches = 0
        """Pipelines answered so far (a counter for tests and the bench)."""

    async def run(
        self, keys: list[str], argv: list[Any], timeout_s: float, alone: Callable[[], Awaitable[Result]]
    ) -> Result:
        """One submit; its result once answered. With nothing in flight it goes at once, alone
        (``alone()``: the plain one-command round trip, so a lone submit pays nothing for
        batching); otherwise it joins the next batch. Raises the Redis error of its batch (or its
        node), its own script error, or ``redis.TimeoutError`` after ``timeout_s``."""
        thread = keys[0]
        if not self._inflight and not self._queue:
            self._inflight += 1
            self._busy[thread] = 1
            try:
                return await alone()
            finally:
                self._inflight -= 1
                del self._busy[thread]
                self._schedule()
        loop = asyncio.get_running_loop()
        pending = Pending(keys, argv, loop.create_future())
        self._queue.append(pending)
        self._schedule()
        try:
            async with asyncio.timeout(timeout_s):
                return await pending.future
        except TimeoutError:
            raise RedisTimeoutError(f"submit not answered within {timeout_s:g} s") from None

    def _schedule(self) -> None:
        if self._queue and not self._kick_scheduled:
            self._kick_scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        """Send what waits, while fewer than ``max_flights`` batches are in flight. A submit whose
        thread has one in flight stays queued (with every later one of that thread), so a
        thread's submits never race on two connections."""
        self._kick_scheduled = False
        while self._queue and self._inflight < self.max_flights:
            batch: list[Pending] = []
            held: list[Pending] = []
            taken = 0
            for p in self._queue:
                if len(batch) >= self.max_batch:
                    break
                taken += 1
                if p.future.done():  # timed out or cancelled before it left: never sent
                    continue
                if p.keys[0] in self._busy:
                    held.append(p)
                else:
                    batch.append(p)
            self._queue[:taken] = held
            if not batch:
                return
            for p in batch:
                self._busy[p.keys[0]] = self._busy.get(p.keys[0], 0) + 1
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._flights.add(task)
            task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[None]) -> None:
        self._flights.discard(task)
        self._inflight -= 1
        self._schedule()

    async def _send(self, batch: list[Pending]) -> None:
        try:
            if self.cluster:
                groups: dict[str, list[Pending]] = {}
                for p in batch:
                    p.node = self.client.get_node_from_key(p.keys[0])
                    groups.setdefault(p.node.name, []).append(p)
                await asyncio.gather(*(self._group(g) for g in groups.values()))
            else:
                await self._group(batch)
        except BaseException as e:  # cancelled (loop closing): no submit may wait forever
            _fail(batch, e)
            raise
        finally:
            for p in batch:
                n = self._busy.pop(p.keys[0]) - 1
                if n:
                    self._busy[p.keys[0]] = n

    async def _group(self, group: list[Pending]) -> None:
        """One node's submits: one pipeline; those the server lacked the script for, once more."""
        try:
            results = await self._execute(group)
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:
                await self.client.script_load(self.script.script)  # every primary, on a cluster
                again = await self._execute([group[i] for i in missing])
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
        except Exception as e:  # the whole pipeline failed (Redis unreachable, timed out)
            _fail(group, e)
            return
        self.batches += 1
        for p, r in zip(group, results, strict=True):
            if not p.future.done():
                if isinstance(r, BaseException):
                    p.future.set_exception(r)
                else:
                    p.future.set_result(r)

    async def _execute(self, group: list[Pending]) -> list[Any]:
        """Replies (or the error of each command) in ``group``'s order: (reply, replicas)."""
        pipe = self.client.pipeline(transaction=False)
        sha = self.script.sha
        node = {"target_nodes": group[0].node} if self.cluster else {}
        for p in group:
            pipe.execute_command("EVALSHA", sha, len(p.keys), *p.keys, *p.argv, **node)
        if self.wait_ms:
            pipe.execute_command("WAIT", 1, self.wait_ms, **node)
        out = await pipe.execute(raise_on_error=False)
        if not self.wait_ms:
            return [r if isinstance(r, BaseException) else (r, None) for r in out]
        acked = out[-1] if isinstance(out[-1], int) else 0
        return [r if isinstance(r, BaseException) else (r, acked) for r in out[:-1]]


def _fail(batch: list[Pending], error: BaseException) -> None:
    for p in batch:
        if p.future.done():
            continue
        if isinstance(error, Exception):
            p.future.set_exception(error)
        else:
            p.future.cancel()
