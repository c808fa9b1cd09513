"""Lua scripts, loaded from ``.lua`` files beside the code that runs them and registered once per
client (``EVALSHA``, reloaded on ``NOSCRIPT``). Each file starts with a ``-- KEYS[1]=… ARGV[1]=…``
header; every key reaches a script through KEYS, never built inside it.

``ScriptSet`` is the loader every side uses; ``SubmitScripts`` are the chat server's own: the
SUBMIT script (append turns, move the due time), PROMPT_SET (procedural prompts) and STATUS
(where a submission stands, read only);
``ReadScripts`` read the turns still buffered (the hot path's recall of pending turns). The worker
keeps its scripts in ``worker/pipeline/lua`` and ``worker/memory/lua``.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any, ClassVar


@cache
def lua_source(package: str, name: str) -> str:
    """The text of ``<package>/lua/<name>.lua`` (read once per process)."""
    return files(package).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


class ScriptSet:
    """The scripts ``NAMES`` of ``PACKAGE/lua``, registered on one client (sync or asyncio)."""

    PACKAGE: ClassVar[str]
    NAMES: ClassVar[tuple[str, ...]]

    def __init__(self, client: Any) -> None:
        for name in self.NAMES:
            setattr(self, name, client.register_script(lua_source(self.PACKAGE, name)))


class SubmitScripts(ScriptSet):
    """What a chat server runs: ``submit`` (one call per submit) and ``prompt_set``."""

    PACKAGE = "producer"
    NAMES = ("submit", "prompt_set", "status")

    submit: Any
    prompt_set: Any
    status: Any


class ReadScripts(ScriptSet):
    """Read-only: ``pending_turns`` (a user's buffered, not yet reflected turns, for recall)."""

    PACKAGE = "producer"
    NAMES = ("pending_turns",)

    pending_turns: Any
