"""Wire formats shared by the producer and the worker. Imports pydantic only.

Names are loaded on first use (PEP 562), so ``import producer``, which needs only ``ids`` and
``messages``, does not also build the worker's memory and reflection models (about a quarter
of its import time)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DecodeError": "schemas.errors",
    "SchemaError": "schemas.errors",
    "MAX_ID_LEN": "schemas.ids",
    "SafeId": "schemas.ids",
    "check_id": "schemas.ids",
    "Memory": "schemas.memory",
    "MemoryKind": "schemas.memory",
    "MemoryRecord": "schemas.memory",
    "MemorySource": "schemas.memory",
    "BufferedTurn": "schemas.messages",
    "Message": "schemas.messages",
    "SubmitReceipt": "schemas.messages",
    "SubmitRequest": "schemas.messages",
    "CommitPlan": "schemas.reflection",
    "DeadLetter": "schemas.reflection",
    "MemoryOp": "schemas.reflection",
    "ReflectArgs": "schemas.reflection",
    "ReflectionResult": "schemas.reflection",
    "LastReflection": "schemas.status",
    "ThreadStatus": "schemas.status",
    "UserStatus": "schemas.status",
}

if TYPE_CHECKING:
    from schemas.errors import DecodeError, SchemaError
    from schemas.ids import MAX_ID_LEN, SafeId, check_id
    from schemas.memory import Memory, MemoryKind, MemoryRecord, MemorySource
    from schemas.messages import BufferedTurn, Message, SubmitReceipt, SubmitRequest
    from schemas.reflection import CommitPlan, DeadLetter, MemoryOp, ReflectArgs, ReflectionResult
    from schemas.status import LastReflection, ThreadStatus, UserStatus


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'schemas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "MAX_ID_LEN",
    "BufferedTurn",
    "CommitPlan",
    "DeadLetter",
    "DecodeError",
    "LastReflection",
    "Memory",
    "MemoryKind",
    "MemoryOp",
    "MemoryRecord",
    "MemorySource",
    "Message",
    "ReflectArgs",
    "ReflectionResult",
    "SafeId",
    "SchemaError",
    "SubmitReceipt",
    "SubmitRequest",
    "ThreadStatus",
    "UserStatus",
    "check_id",
]
