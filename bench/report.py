"""Rows of the benchmark report, percentiles, and the markdown table. Pure: no I/O here."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def ratio(value: float, reference: float) -> float:
    if not reference or math.isnan(reference) or math.isnan(value):
        return math.nan
    return value / reference


@dataclass
class Row:
    """One figure next to its reference, measured in the same run."""

    figure: str
    metric: str
    value: float
    unit: str
    reference: str
    reference_value: float
    goal: str = ""
    met: bool | None = None
    note: str = ""
    ratio: float = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = ratio(self.value, self.reference_value)


@dataclass
class Section:
    """The rows of one figure plus its raw counters (asserted by tests, never timings)."""

    name: str
    rows: list[Row] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows": [_jsonable(asdict(r)) for r in self.rows],
            "counters": self.counters,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def fmt(value: float, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "µs":
        return f"{value:,.0f} µs"
    if unit == "ms":
        return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit in ("/s", "turns/s", "reflections/s", "round trips/s"):
        return f"{value:,.0f} {unit.lstrip('/') if unit != '/s' else '/s'}"
    if unit == "":
        return f"{value:,.2f}" if value != int(value) else f"{int(value):,}"
    return f"{value:,.2f} {unit}" if value != int(value) else f"{int(value):,} {unit}"


def fmt_ratio(value: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.2f}×" if value < 100 else f"{value:,.0f}×"


def markdown(sections: Sequence[Section]) -> str:
    lines = [
        "| # | figure | Reverie | reference (same run) | ratio | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for section in sections:
        for row in section.rows:
            met = {True: "yes", False: "**no**", None: ""}[row.met]
            ref = f"{row.reference}: {fmt(row.reference_value, row.unit)}" if row.reference else ""
            lines.append(
                f"| {row.figure} | {row.metric} | {fmt(row.value, row.unit)} | {ref} | "
                f"{fmt_ratio(row.ratio) if row.reference else ''} | {row.goal} | {met} |"
            )
    notes = [f"- {s.name}: {n}" for s in sections for n in s.notes]
    notes += [f"- {r.figure}. {r.metric}: {r.note}" for s in sections for r in s.rows if r.note]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)
