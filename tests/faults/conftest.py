"""Fault tests run Reverie in separate worker processes: see ``worker_env`` and ``spawn`` in
``tests/conftest.py``."""
