"""The Reverie worker. Folders, bottom to top (each imports only from those below it):

- ``observability/``  logging setup and process-local metrics
- ``memory/``         the memory model: store, retrieval, extraction, planning, LLM client, history
- ``pipeline/``       what happens to a turn: dispatch, lease, snapshot, journal, reflect, commit
- ``runtime.py``      one process's dependencies, built from ``Settings``
- ``features/``       consolidation, procedural memory, agent tools, forget
- ``tasks.py``, ``app.py``  the Celery tasks (defined once) and the app (``celery -A worker.app``)
- ``ops/``            the ``reverie`` CLI, the demo, health checks

The layers are checked by import-linter (``[tool.importlinter]`` in ``pyproject.toml``).
"""
