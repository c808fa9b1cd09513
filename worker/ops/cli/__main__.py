"""``python -m worker.cli`` == ``reverie``."""

from worker.ops.cli import main

main()
