"""``uv run python -m bench [--full | --tiny] [--only 1,3] [--json PATH]``

Quick by default (under 3 minutes on 2 cores); ``--full`` uses the sizes the goals name;
``--tiny`` is for the test that checks the bench runs (counters only, never timings)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Sizes:
    name: str
    enqueue_calls: int
    sessions: int
    per_session: int
    economy: tuple[int, int, int]  # users, threads, turns
    lag_threads: int
    lag_spread_s: float
    reflections: int
    serial: int
    search: tuple[tuple[int, int], ...]  # (users, memories per user), growing
    queries: int
    import_runs: int
    worker_reflections: int
    debounce_s: float = 1.0
    webhook_reflections: int = 40
    finalize_runs: int = 300
    siblings: tuple[int, int, int] = (10, 4, 20)  # users, threads, turns (the side-by-side shape)
    siblings_debounce_s: float = 2.0
    cluster: tuple[int, int, int] = (100, 50, 2)  # submits per series, users, threads per user
    reembed: tuple[int, int] = (20, 100)  # users, memories per user


SIZES = {
    "tiny": Sizes(
        "tiny",
        200,
        10,
        5,
        (3, 1, 3),
        20,
        1.0,
        10,
        2,
        ((2, 20), (4, 20)),
        3,
        1,
        0,
        0.5,
        3,
        10,
        (2, 2, 3),
        0.5,
        reembed=(2, 10),
    ),
    "quick": Sizes(
        "quick",
        5000,
        100,
        50,
        (10, 3, 4),
        1000,
        10.0,
        200,
        6,
        ((10, 100), (30, 100)),
        15,
        5,
        20,
        cluster=(3000, 2000, 3),
    ),
    "full": Sizes(
        "full",
        20000,
        100,
        200,
        (40, 5, 5),
        3000,
        20.0,
        2000,
        10,
        ((100, 100), (1000, 100)),
        20,
        9,
        200,
        1.0,
        300,
        2000,
        cluster=(10000, 10000, 3),
        reembed=(100, 100),
    ),
}
FIGURES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)


def run(sizes: Sizes, only: tuple[int, ...]) -> dict[str, Any]:
    from bench.cluster import cluster_figures
    from bench.enqueue import enqueue_latency, enqueue_throughput
    from bench.env import bench_env
    from bench.first_submit import first_submits
    from bench.memory import memory
    from bench.pipeline import dispatch_lag, economy
    from bench.reembed import reembed_figure
    from bench.report import Section
    from bench.search import search_latency
    from bench.siblings import ready_lag
    from bench.throughput import throughput
    from bench.webhooks import webhooks
    from tests.support.scripted_llm import ScriptedLLM
    from worker.observability.logs import configure

    configure("ERROR", json=True)
    sections: list[Section] = []
    started = time.monotonic()
    when = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = os.getloadavg()
    with bench_env() as env:
        steps = {
            1: lambda: enqueue_latency(env, sizes.enqueue_calls),
            2: lambda: enqueue_throughput(env, sizes.sessions, sizes.per_session),
            3: lambda: _with_llm(lambda llm: economy(env, llm, users=u, threads=t, turns=k, after_s=sizes.debounce_s)),
            4: lambda: dispatch_lag(env, threads=sizes.lag_threads, spread_s=sizes.lag_spread_s),
            5: lambda: throughput(
                env, reflections=sizes.reflections, serial=sizes.serial, warm_up=sizes.name != "tiny"
            ),
            6: lambda: search_latency(env, sizes=list(sizes.search), queries=sizes.queries, quick=sizes.name != "full"),
            7: lambda: memory(env, runs=sizes.import_runs, reflections=sizes.worker_reflections),
            8: lambda: first_submits(env, trials=2 if sizes.name == "tiny" else 5),
            9: lambda: webhooks(env, reflections=sizes.webhook_reflections, finalize_runs=sizes.finalize_runs),
            10: lambda: ready_lag(
                env, users=su, threads=st, turns=sk, after_s=sizes.siblings_debounce_s, gap_s=0.05 if tiny else 0.3
            ),
            11: lambda: cluster_figures(env, *sizes.cluster),
            12: lambda: reembed_figure(env, users=sizes.reembed[0], per_user=sizes.reembed[1], queries=sizes.queries),
        }
        u, t, k = sizes.economy
        su, st, sk = sizes.siblings
        tiny = sizes.name == "tiny"

        def _with_llm(fn: Any) -> Section:
            with ScriptedLLM() as llm:
                return fn(llm)

        for number in only:
            t0 = time.monotonic()
            print(f"figure {number}…", file=sys.stderr, flush=True)
            section = steps[number]()
            section.seconds = time.monotonic() - t0
            sections.append(section)
        leftover = env.cleanup()
        redis_kind = env.redis_kind
    return {
        "when": when,
        "mode": sizes.name,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "redis": redis_kind,
        "seconds": round(time.monotonic() - started, 1),
        "keys_cleaned_up": leftover,
        "sections": sections,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="the sizes the goals name (several minutes)")
    mode.add_argument("--tiny", action="store_true", help="smallest sizes: checks that everything runs")
    parser.add_argument("--only", default="", help="comma-separated figure numbers, e.g. 1,2")
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON (default bench/results/)")
    args = parser.parse_args(argv)
    sizes = SIZES["full" if args.full else "tiny" if args.tiny else "quick"]
    only = tuple(int(x) for x in args.only.split(",") if x.strip()) or FIGURES
    if any(n not in FIGURES for n in only):
        parser.error(f"--only takes figure numbers among {FIGURES}")

    from bench.report import markdown

    result = run(sizes, only)
    sections = result.pop("sections")
    table = markdown(sections)
    load = result["machine"]["loadavg_before"][0]
    print(
        f"Reverie bench ({sizes.name}, {result['when']}, {result['machine']['cpus']} CPUs, "
        f"Python {result['machine']['python']}, Redis: {result['redis']}, load {load:.2f}, "
        f"{result['seconds']:.0f} s)\n"
    )
    print(table)
    out = args.json or RESULTS / f"bench-{sizes.name}-{result['when'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result["sections"] = [s.to_dict() for s in sections]
    result["table"] = table
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
