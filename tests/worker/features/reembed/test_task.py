"""The ``reverie.reembed`` task on the session's Celery worker (the way to re-embed while a worker
owns a local-mode Qdrant folder): dry run, a run split over several tasks by its time budget,
and bad arguments."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import uid
from tests.worker.features.reembed.conftest import alias_target, assert_mirror, collections, seed
from worker.features.reembed import task as job
from worker.tasks import REEMBED


def _result(app: Any, task_id: str) -> Any:
    return app.AsyncResult(task_id).get(timeout=60)


def test_the_task_estimates_then_re_embeds_in_several_tasks(make_system, celery_app, monkeypatch) -> None:
    """With a tiny time budget each task does a step and sends the next one; the chain ends with
    the alias switched and every memory copied."""
    system = make_system(embedding_model="hash-64", collection_refresh_s=0.2)
    seed(system.runtime, [uid("u"), uid("v")], 6)
    estimate = celery_app.send_task(REEMBED, kwargs={"to": "hash-128", "batch_size": 4, "dry_run": True}).get(
        timeout=60
    )
    assert (estimate["memories"], estimate["users"], estimate["batches"]) == (12, 2, 3)
    assert collections(system.runtime) == {"memories__hash-64"}

    monkeypatch.setattr(job, "budget_s", lambda settings: 0.01)
    result = celery_app.send_task(REEMBED, kwargs={"to": "hash-128", "batch_size": 4}).get(timeout=60)
    tasks = 1
    while result.get("next_task_id"):
        assert result["continued"] and result["next_task_id"].startswith("reembed:memories:")
        result = _result(celery_app, result["next_task_id"])
        tasks += 1
    assert result["phase"] == "done" and result["copied"] == 12
    assert tasks >= 4  # three copy batches at least, then the switch and the settling
    assert alias_target(system.runtime) == "memories__hash-128"
    assert_mirror(system.runtime, "memories__hash-64", "memories__hash-128", "hash-128")
    dropped = celery_app.send_task(REEMBED, kwargs={"drop_old": True}).get(timeout=60)
    assert dropped["dropped"] == ["memories__hash-64"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to": "hash-128", "batch_size": -1}, "invalid reembed arguments: batch_size"),
        ({"to": "hash-128", "colour": "red"}, "invalid reembed arguments: colour"),
        ({"abort": True, "drop_old": True}, "exactly one of"),
        ({"to": "nonsense-model"}, "unknown embedding model"),
    ],
)
def test_bad_task_arguments_fail_with_their_reason(make_system, celery_app, kwargs, message) -> None:
    system = make_system(embedding_model="hash-64")
    seed(system.runtime, [uid("u")], 1)
    with pytest.raises(Exception, match=message):
        celery_app.send_task(REEMBED, kwargs=kwargs).get(timeout=60)
    assert collections(system.runtime) == {"memories__hash-64"}
