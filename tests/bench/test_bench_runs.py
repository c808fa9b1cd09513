"""The benchmark runs end to end at tiny sizes. Counters only: timings are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = os.environ | {"REDIS_URL": redis_url, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    # A child process: the bench starts and stops its own Celery workers, which must not touch
    # the test session's worker (Celery's stop signal is process-wide).
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,  # figure 9 starts a 6-node cluster
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| # | figure |" in proc.stdout
    return json.loads(out.read_text())


def sections(report: dict) -> dict[str, dict]:
    return {s["name"].split(".")[0]: s for s in report["sections"]}


def test_every_figure_has_rows_with_a_reference_and_a_ratio(report) -> None:
    """Twelve figures; every row names its reference and carries the ratio to it."""
    found = sections(report)
    assert sorted(found, key=int) == [str(n) for n in range(1, 13)]
    for section in found.values():
        assert section["rows"], section["name"]
        for row in section["rows"]:
            assert row["reference"], row
            assert set(row) >= {"figure", "metric", "value", "unit", "reference_value", "ratio", "goal", "met"}
    assert report["mode"] == "tiny"
    assert "| # | figure |" in report["table"]


def test_economy_is_one_reflection_per_quiet_period_even_with_four_workers(report) -> None:
    """Every quiet period (U×T) committed exactly once, one extraction call per reflection (a
    joint one covers the user's sibling threads), nothing lost or duplicated, with 1 and 4 workers."""
    runs = sections(report)["3"]["counters"]
    assert set(runs) == {"1 worker", "4 workers racing"}
    for run in runs.values():
        assert run["finished"]
        assert run["thread_commits"] == run["quiet_periods"] == run["users"] * run["threads"]
        assert run["extraction_calls"] == run["quiet_periods"] - run["joined_threads"]
        assert run["users"] <= run["extraction_calls"] <= run["quiet_periods"]
        assert run["hot_path_calls"] == run["users"] * run["threads"] * run["turns_per_thread"]
        assert run["lost_turns"] == 0 and run["still_buffered"] == 0
        assert run["duplicate_memories"] == 0 and run["missing_memories"] == 0
        assert run["retried_submits_deduplicated"] == run["hot_path_calls"]


def test_every_due_thread_is_reflected(report) -> None:
    """Dispatch lag runs: no thread starved, each reflected once."""
    for run in sections(report)["4"]["counters"].values():
        assert run["starved"] == 0
        assert run["reflected"] == run["threads"]


def test_throughput_runs_commit_every_reflection(report) -> None:
    """Serial and concurrent runs, task events on and off, commit one reflection (one LLM call)
    per thread; the CPU breakdown has its parts."""
    runs = sections(report)["5"]["counters"]
    assert set(runs) == {"serial", "c32", "c32 events off", "c64"}
    for run in runs.values():
        assert run["committed"] == run["reflections"]
        assert run["llm_calls"] == run["reflections"]
        assert {"cpu_ms_llm_client", "cpu_ms_qdrant_local", "cpu_ms_embedding", "cpu_ms_outside_reflection"} <= set(run)


def test_search_and_memory_counters(report) -> None:
    """Search ran at each size; the import probes ran; the bench cleaned its keys."""
    search = sections(report)["6"]["counters"]
    assert [v["memories"] for v in search.values()] == [40, 80]
    imports = sections(report)["7"]["counters"]["imports"]
    assert set(imports) == {"sys", "redis", "producer"}
    assert report["keys_cleaned_up"] >= 0
    enqueue = sections(report)["2"]["counters"]
    assert enqueue["hiredis"] is True


def test_first_submits_are_all_accepted_and_warm_opens_one_connection_per_caller(report) -> None:
    runs = sections(report)["8"]["counters"]
    assert set(runs) == {"cold pool", "after warm()"}
    for run in runs.values():
        assert run["submits"] > 0 and run["accepted"] == run["submits"]
    assert runs["cold pool"]["warmed_connections"] == 0
    assert runs["after warm()"]["warmed_connections"] == 40 * 2  # 40 callers, 2 trials at --tiny


def test_webhooks_deliver_every_event_and_finalize_writes_them(report) -> None:
    """Figure 9: every event of both paces delivered, none lost, every signature verified; the
    events-on FINALIZE runs wrote one event per op and the events-off runs none."""
    counters = sections(report)["9"]["counters"]
    for run in counters["delivery"].values():
        assert run["events"] == run["delivered"] > 0
        assert run["lost"] == 0 and run["bad_signatures"] == 0 and run["bare_posts"] > 0
    fin = counters["finalize"]
    assert fin["outcomes"] == {"ok": 2 * fin["runs_each"] + 2}
    assert fin["events_written"] == 5 * (fin["runs_each"] + 1)


def test_sibling_threads_are_each_reflected_once_and_nothing_is_lost(report) -> None:
    """Figure 10, siblings joined (local mode, Qdrant in memory) and one by one: every thread of
    every user is committed, no turn or memory is lost or doubled; joined, a user's threads due
    together need fewer model calls than threads; one by one, exactly one call per thread, and
    the siblings that waited for the user's lease were handed it."""
    runs = sections(report)["10"]["counters"]
    assert set(runs) == {"local", "in memory", "one by one"}
    for run in runs.values():
        assert run["finished"]
        assert run["ready_threads"] == run["users"] * run["threads"]
        assert run["lost_turns"] == 0 and run["still_buffered"] == 0
        assert run["duplicate_memories"] == 0 and run["missing_memories"] == 0
        assert sorted(run["ready_lag_p50_by_sibling_ms"], key=int) == [str(n) for n in range(1, run["threads"] + 1)]
    for joined in (runs["local"], runs["in memory"]):
        assert joined["joint_reflections"] >= 1
        assert joined["users"] <= joined["extraction_calls"] < joined["users"] * joined["threads"]
    one = runs["one by one"]
    assert one["joint_reflections"] == 0
    assert one["extraction_calls"] == one["expected_calls"] == one["users"] * one["threads"]
    assert one["handover_p50_ms"] is not None  # each user's second thread was handed the lease


def test_the_cluster_figure_spread_keys_over_three_primaries(report) -> None:
    """Figure 11 ran on three primaries: every one holds keys of the load, and every series ran."""
    counters = sections(report)["11"]["counters"]
    assert len(counters["keys_per_primary"]) == 3
    assert min(counters["keys_per_primary"].values()) > 0
    assert set(counters["p50_us"]) == {"single", "cluster", "wait", "set:single", "set:cluster"}


def test_re_embedding_copies_every_memory_and_no_search_fails(report) -> None:
    """Figure 12: both re-embeds finish with every memory copied, and searches ran during them."""
    runs = sections(report)["12"]["counters"]
    assert set(runs) == {"hash-128", "use-m3"}
    for run in runs.values():
        assert run["phase"] == "done" and run["copied"] == run["memories"]
        assert run["search_errors"] == 0 and run["searches_during"] > 0
