"""Figure 7: peak RSS of a real worker process and of ``import producer``, and the import time
of ``producer`` next to ``import redis`` — each in fresh interpreters, several runs, median."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from bench.env import BenchEnv
from bench.report import Section, median, ratio
from bench.system import llm_subprocess
from producer import Producer, ProducerConfig

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({{"import_ms": (t1 - t0) * 1000, "peak_rss_kb": int(hwm), "modules": len(sys.modules)}}))
"""
# Byte-compiled modules are what a deployed service imports (pip and uv installs compile them,
# or the first run caches them); PYTHONDONTWRITEBYTECODE would make every import recompile.
_CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True"
}


def _probe(module: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=_CHILD_ENV,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def import_costs(runs: int) -> dict[str, dict[str, float]]:
    """Interleaved fresh-interpreter runs; medians."""
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in ("sys", "redis", "producer")}
    for module in samples:  # warm-up: writes the bytecode caches
        _probe(module)
    for _ in range(runs):
        for module in samples:
            samples[module].append(_probe(module))
    return {
        m: {k: median([s[k] for s in v]) for k in ("import_ms", "peak_rss_kb", "modules")} for m, v in samples.items()
    }


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _wait_committed(p: Producer, proc: subprocess.Popen[bytes], n: int, timeout_s: float) -> int:
    committed = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        committed = int(p.client.hget(p.keys.stats, "committed") or 0)
        if committed >= n:
            break
        time.sleep(0.1)
    return committed


def worker_peak_rss(env: BenchEnv, reflections: int) -> dict[str, Any]:
    """Start ``celery -A worker.app worker`` (threads pool, dispatcher inside, as ``reverie worker``
    runs it) against the scripted LLM, let it commit ``reflections`` reflections, read its peak RSS."""
    prefix = env.sub_prefix("mem")
    with llm_subprocess(0.05) as base_url:
        worker_env = _CHILD_ENV | {
            "REVERIE_REDIS_URL": env.redis_url,
            "REVERIE_KEY_PREFIX": prefix,
            "REVERIE_QDRANT_PATH": str(env.tmp / "mem" / "qdrant"),
            "REVERIE_MODEL": "openai/scripted",
            "REVERIE_LLM_API_BASE": base_url,
            "REVERIE_LLM_API_KEY": "sk-test",
            "REVERIE_LOG_LEVEL": "WARNING",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.app",
                "worker",
                "-P",
                "threads",
                "-c",
                "32",
                "-l",
                "WARNING",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ],
            env=worker_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        committed, first_kb, peak_kb = 0, 0, 0
        try:
            with Producer(ProducerConfig(redis_url=env.redis_url, key_prefix=prefix, timeout_s=5.0)) as p:
                for i in range(reflections + 1):
                    turn = {"role": "user", "content": f"memu{i} likes ramen", "id": "1"}
                    p.submit(f"memu{i}", "t", [turn], after_seconds=0)
                    if i == 0:  # the worker is up (litellm imported) once it committed one
                        _wait_committed(p, proc, 1, 120)
                        first_kb = _status_kb(proc.pid, "VmRSS") if proc.poll() is None else 0
                committed = _wait_committed(p, proc, reflections + 1, 120) - 1
            peak_kb = _status_kb(proc.pid, "VmHWM") if proc.poll() is None else 0
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    return {
        "reflections": reflections,
        "committed": committed,
        "rss_after_first_kb": first_kb,
        "peak_rss_kb": peak_kb,
        "seconds": round(elapsed, 1),
    }


def memory(env: BenchEnv, *, runs: int, reflections: int) -> Section:
    section = Section("7. memory and import time")
    imports = import_costs(runs)
    worker = (
        worker_peak_rss(env, reflections)
        if reflections
        else {"committed": 0, "peak_rss_kb": 0, "rss_after_first_kb": 0}
    )
    red, prod = imports["redis"], imports["producer"]
    section.add(
        "7",
        "import producer (fresh interpreter, median)",
        prod["import_ms"],
        "ms",
        "import redis",
        red["import_ms"],
        "≤ 2× import redis",
        ratio(prod["import_ms"], red["import_ms"]) <= 2,
    )
    section.add(
        "7",
        "peak RSS of a process after import producer",
        prod["peak_rss_kb"] / 1024,
        "MiB",
        "after import redis",
        red["peak_rss_kb"] / 1024,
    )
    section.add(
        "7",
        f"peak RSS of a worker process after {worker['committed']} more reflections",
        worker["peak_rss_kb"] / 1024,
        "MiB",
        "same worker after its first reflection",
        worker["rss_after_first_kb"] / 1024,
    )
    section.counters = {"imports": imports, "worker": worker, "runs": runs}
    section.notes.append(
        f"{runs} fresh interpreters per module, interleaved, median, bytecode cached (one warm-up run each); "
        f"a bare interpreter peaks at {imports['sys']['peak_rss_kb'] / 1024:.1f} MiB. Import time by perf_counter "
        "around the import, RSS from /proc VmHWM; worker = `celery -A worker.app worker -P threads -c 32` (dispatcher "
        "inside, litellm warmed up at start) against the scripted LLM, VmHWM read after its reflections."
    )
    return section
