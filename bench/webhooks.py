"""Figure 9: change events and webhooks.

(a) Delivery lag: a reflection's commit (the event's ``ts_ms``, Redis server time) → the
receipt of its signed POST at a receiver on 127.0.0.1 that verifies every signature, through
the whole path (relay in ``XREAD BLOCK`` → ``reverie.deliver_webhook`` task → Celery worker →
``XRANGE``/``XCLAIM`` → sign → POST → ``XACK``). Reference, same run, interleaved: one bare
signed POST round trip to the same receiver from the same HTTP client.

(b) Event write overhead: the FINALIZE commit step (one Lua call) of a 5-op commit with change
events on, against the same step with ``events_max_len=0``, interleaved, same run."""

from __future__ import annotations

import base64
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from bench.env import BenchEnv
from bench.report import Section, percentile
from bench.system import running_system
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.scripted_llm import ScriptedLLM
from tests.support.webhook_receiver import WebhookReceiver

OPS_PER_COMMIT = 5
BARE = "bare:"
WARM_UP = 2
WARM_UP_REFLECTIONS = 3
"""Reflected and delivered before the measured ones: a fresh worker's first calls are cold."""


def _secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def _bare_posts(url: str, secret: str, stop: threading.Event, out: list[float], every_s: float) -> None:
    """The reference: sign + POST + answer, one at a time, beside the deliveries."""
    from schemas.webhooks import WebhookEndpoint
    from worker.features.webhooks.deliver import post, sign

    endpoint = WebhookEndpoint(name="bare", url=url, secret=SecretStr(secret))
    n = 0
    while not stop.is_set():
        body = f'{{"type":"memory.created","timestamp":"t","data":{{"n":{n}}}}}'
        t0 = time.perf_counter()
        result = post(endpoint, sign(endpoint, f"{BARE}{n}", body, datetime.now(UTC)), body, 5.0)
        if result.ok:
            out.append((time.perf_counter() - t0) * 1000)
        n += 1
        stop.wait(every_s)


def _deliveries(rx: WebhookReceiver) -> dict[str, Any]:
    """What the receiver accepted, without the reference's bare POSTs."""
    return {k: v for k, v in rx.accepted().items() if not k.startswith(BARE)}


def delivery_lag(env: BenchEnv, name: str, reflections: int, gap_s: float) -> dict[str, Any]:
    """``reflections`` users, 2 turns each (2 events a commit), submitted ``gap_s`` apart."""
    from worker.app import create_app, make_relay
    from worker.features.webhooks.relay import RelayThread
    from worker.memory.events import read_events

    secret = _secret()
    bare: list[float] = []
    with ScriptedLLM() as llm, WebhookReceiver(secret) as rx:
        llm.set_responder(insert_each_user_turn)
        hooks = [{"name": "bench", "url": rx.url, "secret": secret}]
        settings = {
            "model": "openai/scripted",
            "llm_api_base": llm.base_url,
            "llm_api_key": SecretStr("sk-test"),
            "after_seconds": 0.2,
            "max_wait_s": 5.0,
            "webhooks": hooks,
        }
        with running_system(env, name, concurrency=16, **settings) as system:
            app = create_app(system.settings)  # sends only: the system's workers run the tasks
            relay = RelayThread(make_relay(app, coordinator=system.runtime.coordinator)).start()
            stop = threading.Event()
            ref = threading.Thread(target=_bare_posts, args=(rx.url, secret, stop, bare, 0.02), daemon=True)
            ref.start()
            try:
                expected = 0
                for phase, count in (("warm", WARM_UP_REFLECTIONS), ("wh", reflections)):
                    for i in range(count):
                        turns = [{"role": "user", "content": f"fact {i}.{k} about me"} for k in range(2)]
                        system.producer.submit(f"{phase}{i}", "t", turns)
                        time.sleep(gap_s)
                    expected += 2 * count
                    system.wait(lambda n=expected: len(_deliveries(rx)) >= n, 120)
                    if phase == "warm":
                        bare.clear()
            finally:
                stop.set()
                ref.join(10)
                relay.stop()
                app.close()
            events = read_events(system.runtime.redis, system.runtime.coordinator.keys.events, count=100_000)
    accepted = _deliveries(rx)
    events = [e for e in events if e.user_id.startswith("wh")]  # not the warm-up's
    lags = [accepted[e.event_id].at * 1000 - e.ts_ms for e in events if e.event_id in accepted]
    return {
        "reflections_per_s": round(1 / gap_s, 1),
        "events": len(events),
        "delivered": sum(e.event_id in accepted for e in events),
        "lost": len({e.event_id for e in events} - set(accepted)),
        "duplicates": sum(not r.msg_id.startswith(BARE) for r in rx.receipts) - len(accepted),
        "bad_signatures": len(rx.bad_signatures),
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "bare_posts": len(bare),
        "bare_p50_ms": percentile(bare, 50),
        "bare_p99_ms": percentile(bare, 99),
    }


def finalize_overhead(env: BenchEnv, runs: int) -> dict[str, Any]:
    """FINALIZE of a journaled 5-insert commit, events on and off, alternating."""
    import redis

    from producer import Producer, ProducerConfig
    from producer.memories.embeddings import make_embedder
    from schemas.settings import Settings
    from worker.memory.extraction.base import PlannedOp
    from worker.memory.planning import build_plan
    from worker.pipeline.coordinator import Coordinator
    from worker.pipeline.keys import WorkerKeys

    prefix = env.sub_prefix("finalize")
    client = redis.Redis.from_url(env.redis_url)
    keys = WorkerKeys(prefix)
    on = Coordinator(client, keys, events_max_len=100_000)
    off = Coordinator(client, keys, events_max_len=0)
    embedder = make_embedder(Settings(embedding_model="hash-64"))
    times: dict[bool, list[float]] = {True: [], False: []}
    outcomes: dict[str, int] = {}
    with Producer(
        ProducerConfig(redis_url=env.redis_url, key_prefix=prefix, after_seconds=3600, max_wait_s=7200)
    ) as producer:
        for i in range(2 * runs + WARM_UP):  # the first of each loads the script: not counted
            events_on = i % 2 == 0
            coord = on if events_on else off
            user = f"fin{i}"
            producer.submit(user, "t", [{"role": "user", "content": "five facts about me"}])
            token = coord.acquire_lease(user, 60_000)
            snap = coord.snapshot(user, "t", 100)
            contents = [f"fact {k} of {user}" for k in range(OPS_PER_COMMIT)]
            plan = build_plan(
                user_id=user,
                thread_id="t",
                generation=snap.generation,
                namespace="bench",
                turns=snap.turns,
                existing=[],
                ops=[PlannedOp("insert", "Memory", {"content": c}, c) for c in contents],
                embedder=embedder,
                kind="semantic",
                now_ms=int(time.time() * 1000),
            )
            coord.prepare(token, plan, "rollback")
            t0 = time.perf_counter()
            outcome = coord.finalize(token, plan)
            if i >= WARM_UP:
                times[events_on].append((time.perf_counter() - t0) * 1e6)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    events = client.xlen(keys.events)
    client.close()
    return {
        "runs_each": runs,
        "outcomes": outcomes,
        "events_written": events,
        "on_p50_us": percentile(times[True], 50),
        "on_p99_us": percentile(times[True], 99),
        "off_p50_us": percentile(times[False], 50),
        "off_p99_us": percentile(times[False], 99),
    }


PACES = (("4 per s", 0.25), ("20 per s", 0.05))
"""Seconds between submits: 4 and 20 reflections/s (one worker process sustains about 13/s of
real extraction here, figure 5; the scripted LLM's are cheaper)."""


def webhooks(env: BenchEnv, *, reflections: int, finalize_runs: int) -> Section:
    """Figure 9."""
    section = Section("9. change events and webhooks")
    lags = {label: delivery_lag(env, f"webhooks{int(1 / gap)}", reflections, gap) for label, gap in PACES}
    fin = finalize_overhead(env, finalize_runs)
    section.counters = {"delivery": lags, "finalize": fin}
    for lag in lags.values():
        pace = f"{lag['reflections_per_s']:g} reflections/s"
        section.add(
            "9",
            f"webhook delivery lag p50, {pace} (commit → signed POST received)",
            lag["lag_p50_ms"],
            "ms",
            "one bare signed POST round trip p50",
            lag["bare_p50_ms"],
            note=f"{lag['delivered']} of {lag['events']} events, {lag['duplicates']} duplicates, {lag['lost']} lost",
        )
        section.add(
            "9",
            f"webhook delivery lag p99, {pace}",
            lag["lag_p99_ms"],
            "ms",
            "one bare signed POST round trip p99",
            lag["bare_p99_ms"],
        )
    for q in ("p50", "p99"):
        section.add(
            "9",
            f"FINALIZE of a {OPS_PER_COMMIT}-op commit {q}, events on",
            fin[f"on_{q}_us"],
            "µs",
            f"same step with events_max_len=0 {q}",
            fin[f"off_{q}_us"],
        )
    section.notes.append(
        f"Lag: {reflections} reflections (2 inserts each) per pace through the scripted LLM, one in-process "
        "worker (threads pool, 16), the relay in a thread as in a worker; event ts_ms is Redis server time, "
        "receipt the receiver's clock (same host). The bare POSTs ran every 20 ms during the same deliveries, "
        f"so both see the same load; {WARM_UP_REFLECTIONS} warm-up reflections first (a cold worker's first "
        "deliveries wait behind its first, slow reflections: deliveries share the `reverie` queue with them). "
        f"FINALIZE: client-side round trip of the Lua call, {finalize_runs} runs each, alternating on/off, "
        "after one warm-up each."
    )
    return section
