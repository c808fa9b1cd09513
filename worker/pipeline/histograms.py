"""Fleet-wide histograms kept in Redis, so any exporter (a worker, ``reverie metrics --serve``)
reports the same distribution: dispatch lag (due time to claim) and reflection duration by
outcome. Each observation adds 1 to its bucket, its milliseconds to the sum, and 1 to the count,
as fields of the stats hash (``h:<name>[:<label>]:le=<bound>``, ``…:sum_ms``, ``…:count``)."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping

DISPATCH_LAG = "dispatch_lag"
REFLECTION = "reflection_duration"
BUCKETS_S: dict[str, tuple[float, ...]] = {
    DISPATCH_LAG: (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    REFLECTION: (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
}


def _base(name: str, label: str | None) -> str:
    return f"h:{name}:{label}" if label else f"h:{name}"


def observations(name: str, seconds: Iterable[float], label: str | None = None) -> Counter[str]:
    """The stats-hash increments for these observations (pure: the caller HINCRBYs them)."""
    buckets = BUCKETS_S[name]
    out: Counter[str] = Counter()
    base = _base(name, label)
    for s in seconds:
        s = max(s, 0.0)
        i = bisect.bisect_left(buckets, s)
        out[f"{base}:le={buckets[i]:g}" if i < len(buckets) else f"{base}:le=+Inf"] += 1
        out[f"{base}:sum_ms"] += round(s * 1000)
        out[f"{base}:count"] += 1
    return out


def read(stats: Mapping[str, float], name: str, label: str | None = None) -> tuple[list[tuple[str, float]], float]:
    """Cumulative ``(le, count)`` buckets, ``+Inf`` last, and the sum in seconds."""
    base = _base(name, label)
    running, out = 0.0, []
    for bound in [f"{b:g}" for b in BUCKETS_S[name]] + ["+Inf"]:
        running += stats.get(f"{base}:le={bound}", 0.0)
        out.append((bound, running))
    return out, stats.get(f"{base}:sum_ms", 0.0) / 1000


def labels(stats: Mapping[str, float], name: str) -> list[str]:
    """The labels (outcomes) a labelled histogram has observations for."""
    prefix = f"h:{name}:"
    return sorted({k[len(prefix) :].split(":", 1)[0] for k in stats if k.startswith(prefix) and k.endswith(":count")})


def quantile(buckets: list[tuple[str, float]], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (None if empty; inf past the last)."""
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return None
    for bound, running in buckets:
        if running >= q * total:
            return float("inf") if bound == "+Inf" else float(bound)
    return None
