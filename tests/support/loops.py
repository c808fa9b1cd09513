"""litellm's service logger calls ``asyncio.get_event_loop()``, which gives the calling thread an
event loop nobody closes. In the main thread of a test process that loop lives on until the
garbage collector meets it, in some later and unrelated test, whose ``filterwarnings = error``
then fails it with "unclosed event loop". ``close_leftover_loop`` closes it right away."""

from __future__ import annotations

import asyncio


def close_leftover_loop() -> None:
    """Close the main thread's current event loop if one is set and idle (a sync test's leftover;
    pytest-asyncio closes and unsets the loops of async tests itself)."""
    # The policy's private slot: the public getters would create a loop when there is none.
    loop = getattr(getattr(asyncio.get_event_loop_policy(), "_local", None), "_loop", None)
    if loop is not None and not loop.is_running() and not loop.is_closed():
        loop.close()
        asyncio.set_event_loop(None)
