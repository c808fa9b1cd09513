"""What operators run, on top of everything: the ``reverie`` CLI, the demo, health checks, the
embedded Redis for dev and tests, and the README's generated settings table."""
