"""Reverie benchmarks: ``uv run python -m bench`` (quick), ``--full`` (bigger sizes).

Every figure is printed next to a reference measured in the same run, as a ratio."""
