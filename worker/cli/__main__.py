"""``python -m worker.cli`` == ``reverie``."""

from worker.cli import main

main()
