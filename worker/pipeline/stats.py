"""Fleet-wide numbers from Redis: the stats hash every producer, dispatcher and worker
increments, plus live sizes (due, in-flight, buffered turns, dead letters, how overdue the oldest
due thread is). Read at scrape time, so any process (a worker, ``reverie metrics --serve``)
reports the same values; scrape one of them, not all, or aggregate with ``max``."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from producer.keys import split_member
from producer.text import as_text
from worker.pipeline import histograms
from worker.pipeline.coordinator import Coordinator
from worker.pipeline.shards import sum_counters

REFLECTION_OUTCOMES = ("committed", "superseded", "rolled_back", "noop", "deferred", "failed", "dead_lettered")
COUNTERS = {
    # stats field → (metric name without _total, help)
    "enqueued_turns": ("reverie_enqueued_turns", "Turns accepted by producers."),
    "duplicate_turns": ("reverie_duplicate_turns", "Turns skipped as already buffered (retries)."),
    "dispatched": ("reverie_dispatched", "Threads claimed and sent to Celery."),
    "requeued": ("reverie_requeued", "Claimed threads made due again after their in-flight deadline."),
    "reflected_turns": ("reverie_reflected_turns", "Turns consumed by committed reflections."),
    "llm_calls": ("reverie_llm_calls", "Every LLM call (extraction, merge, prompt optimizer), retries included."),
    "llm_calls_failed": ("reverie_llm_calls_failed", "LLM calls that got no answer (429, 5xx, timeouts)."),
    "llm_calls_in_failures": (
        "reverie_llm_calls_in_failed_reflections",
        "LLM calls made by reflections that then failed (paid for, nothing committed).",
    ),
    "llm_text_replies": (
        "reverie_llm_text_replies",
        "Replies in text with no memory operation to user turns (a model that does not do tool calls?).",
    ),
    "llm_text_tool_calls": ("reverie_llm_text_tool_calls", "Operations read from a reply's text, not its tool calls."),
}
BUFFER_SAMPLE = 1000
"""Threads whose buffers are summed for ``reverie_buffered_turns`` (due and in-flight)."""


class RedisCollector(Collector):
    """Reads Reverie's shared counters and queue sizes from Redis at scrape time."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def snapshot(self) -> dict[str, float]:
        """The raw numbers behind the metrics (also used by ``reverie stats``), summed over the
        shards: ``TIME``, then one pipeline (one round trip per primary on a cluster)."""
        r, keys = self.coordinator.r, self.coordinator.keys
        shards = keys.all_shards()
        now = r.time()  # not in the pipeline: a cluster pipeline refuses keyless commands
        pipe = r.pipeline(transaction=False)
        for shard in shards:
            pipe.hgetall(shard.stats)
            pipe.zcard(shard.due_ss)
            pipe.zcard(shard.inflight_ss)
            pipe.hlen(shard.dlq)
            pipe.zrange(shard.due_ss, 0, 0, withscores=True)
            pipe.zrange(shard.due_ss, 0, BUFFER_SAMPLE - 1)
            pipe.zrange(shard.inflight_ss, 0, BUFFER_SAMPLE - 1)
        replies = pipe.execute()
        rows = [replies[n : n + 7] for n in range(0, len(replies), 7)]
        out: dict[str, float] = {k: float(v) for k, v in sum_counters([row[0] for row in rows]).items()}
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        out["due_threads"] = float(sum(int(row[1]) for row in rows))
        out["inflight_threads"] = float(sum(int(row[2]) for row in rows))
        out["dead_letters"] = float(sum(int(row[3]) for row in rows))
        heads = [row[4][0][1] for row in rows if row[4]]
        out["oldest_overdue_s"] = max(0.0, (now_ms - min(heads)) / 1000) if heads else 0.0
        members = {as_text(m) for row in rows for m in row[5]} | {as_text(m) for row in rows for m in row[6]}
        out["buffered_turns"] = float(self._buffered(sorted(members)[: 2 * BUFFER_SAMPLE]))
        return out

    def _buffered(self, members: list[str]) -> int:
        if not members:
            return 0
        pipe = self.coordinator.r.pipeline(transaction=False)
        for m in members:
            pipe.llen(self.coordinator.keys.buffer(*split_member(m)))
        return sum(int(n) for n in pipe.execute())

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        for field, (name, help_) in COUNTERS.items():
            yield CounterMetricFamily(name, help_, value=s.get(field, 0.0))
        outcomes = CounterMetricFamily("reverie_reflections", "Finished reflections, by outcome.", labels=["outcome"])
        for outcome in REFLECTION_OUTCOMES:
            outcomes.add_metric([outcome], s.get(outcome, 0.0))
        yield outcomes
        tokens = CounterMetricFamily("reverie_llm_tokens", "LLM tokens used by extraction.", labels=["type"])
        tokens.add_metric(["prompt"], s.get("prompt_tokens", 0.0))
        tokens.add_metric(["completion"], s.get("completion_tokens", 0.0))
        yield tokens
        yield CounterMetricFamily(
            "reverie_llm_cost_usd", "LLM cost (litellm's price table).", value=s.get("cost_microusd", 0.0) / 1e6
        )
        lag, lag_sum = histograms.read(s, histograms.DISPATCH_LAG)
        yield HistogramMetricFamily(
            "reverie_dispatch_lag_seconds",
            "Due time to claim, over all dispatchers.",
            buckets=lag,
            sum_value=lag_sum,
        )
        duration = HistogramMetricFamily(
            "reverie_reflection_duration_seconds",
            "Wall time of reflection tasks, over all workers, by outcome.",
            labels=["outcome"],
        )
        for outcome in histograms.labels(s, histograms.REFLECTION):
            buckets, total = histograms.read(s, histograms.REFLECTION, outcome)
            duration.add_metric([outcome], buckets, total)
        yield duration
        yield GaugeMetricFamily("reverie_due_threads", "Threads waiting for their due time.", value=s["due_threads"])
        yield GaugeMetricFamily(
            "reverie_inflight_threads", "Threads claimed, reflection running.", value=s["inflight_threads"]
        )
        yield GaugeMetricFamily(
            "reverie_buffered_turns", "Turns buffered in due and in-flight threads.", value=s["buffered_turns"]
        )
        yield GaugeMetricFamily("reverie_dead_letters", "Threads in the dead-letter hash.", value=s["dead_letters"])
        yield GaugeMetricFamily(
            "reverie_oldest_overdue_seconds",
            "How long the most overdue thread has been waiting for a dispatcher (0 = none).",
            value=s["oldest_overdue_s"],
        )
