"""Identifier rules shared by producer, worker and CLI.

Ids end up inside Redis keys (``reverie:buf:{user}:{thread}``) and Qdrant payloads, so they
are restricted to a safe charset: no ``:`` (our key separator), no ``{}`` (cluster hash tags),
no glob characters, no whitespace or control characters.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

MAX_ID_LEN = 128
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]*$")


def check_id(value: str) -> str:
    """Return ``value`` if it is a safe id, else raise ``ValueError`` naming the rule broken."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not value or not value.strip():
        raise ValueError("must not be empty")
    if len(value) > MAX_ID_LEN:
        raise ValueError(f"must be at most {MAX_ID_LEN} characters, got {len(value)}")
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(
            "may contain only letters, digits and _ . @ + = - (and must start with a letter or "
            "digit); ':', '{', '}', '*', whitespace and control characters are not allowed"
        )
    return value


SafeId = Annotated[str, StringConstraints(strict=True), AfterValidator(check_id)]
"""A user, thread, message or profile id."""
