"""Prometheus metrics of this process, and the registry/exporter helpers.

``LOCAL`` holds the reflection duration and dispatch lag histograms, observed where the work
happens; they are per process (label them by instance in Prometheus). The fleet-wide counters
read from Redis are a collector of the pipeline's (``worker.pipeline.stats``); ``build_registry``
serves both.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

LOCAL = CollectorRegistry(auto_describe=True)
REFLECTION_SECONDS = Histogram(
    "reverie_process_reflection_duration_seconds",
    "Wall time of one reflection task in this process, by outcome (fleet-wide: reverie_reflection_duration_seconds).",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=LOCAL,
)
DISPATCH_LAG_SECONDS = Histogram(
    "reverie_process_dispatch_lag_seconds",
    "Time from a thread's due time to its claim by this process's dispatcher.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=LOCAL,
)


class _Local(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from LOCAL.collect()


def build_registry(*collectors: Collector, local: bool = True) -> CollectorRegistry:
    """A registry with ``collectors`` (e.g. the fleet-wide Redis one) and this process's own."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    if local:
        registry.register(_Local())
    return registry


def render(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def serve(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> object:
    """Start the exporter thread; returns the server (``.shutdown()`` stops it)."""
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server


def observe_reflection(outcome: str, seconds: float) -> None:
    REFLECTION_SECONDS.labels(outcome=outcome).observe(seconds)


def observe_dispatch_lag(lag_ms: int) -> None:
    DISPATCH_LAG_SECONDS.observe(max(lag_ms, 0) / 1000)
