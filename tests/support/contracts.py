"""Pipeline contracts checked the same way on one Redis (``tests/worker/pipeline``) and on Redis
Cluster (``tests/cluster``): a system on the scripted model, and the checks both suites run."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.scripted_llm import Reply


def llm_system(make: Any, scripted: Any, **overrides: Any) -> Any:
    """A running system (``make_system`` or ``make_cluster_system``) whose model inserts each user turn."""
    scripted.set_responder(insert_each_user_turn)
    return make(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test", **overrides)


def check_five_submits_reflect_once(system: Any, scripted: Any, *, after_seconds: float) -> None:
    """Five submits 0.5 s apart, each within the debounce of the last: one reflection of all five."""
    user = uid("u")
    for i in range(5):
        system.producer.submit(user, "t", [{"role": "user", "content": f"turn {i}"}], after_seconds=after_seconds)
        time.sleep(0.5)
    assert system.outcomes() == []
    system.wait_for(lambda: len(system.committed(user)) == 1, timeout_s=10, what="commit")
    time.sleep(0.5)
    assert scripted.chat_calls == 1
    assert system.committed(user)[0].turns == 5


def check_one_user_never_interleaves(system: Any, scripted: Any) -> None:
    """Three threads of one user due together, reflected one by one (``join_siblings=0``): each
    extraction starts after the previous one ended, and the others waited for the lease."""
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def responder(body: dict[str, Any]) -> Reply:
        start = time.monotonic()
        reply = insert_each_user_turn(body)
        with lock:
            spans.append((start, start + scripted.latency_s))
        return reply

    scripted.set_responder(responder)
    scripted.latency_s = 0.8
    user = uid("u")
    for thread in ("a", "b", "c"):
        system.producer.submit(user, thread, [{"role": "user", "content": f"in {thread}"}])
    system.wait_for(lambda: len(system.committed(user)) == 3, timeout_s=20, what="three commits")
    spans.sort()
    assert len(spans) == 3
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.35, f"reflections overlapped: {spans}"
    assert "deferred" in system.outcomes(user)
