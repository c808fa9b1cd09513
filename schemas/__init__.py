"""Wire formats shared by the producer and the worker. Imports pydantic only."""

from schemas.errors import DecodeError, SchemaError
from schemas.ids import MAX_ID_LEN, SafeId, check_id
from schemas.memory import Memory, MemoryKind, MemoryRecord, MemorySource
from schemas.messages import BufferedTurn, Message, SubmitReceipt, SubmitRequest
from schemas.reflection import (
    CommitPlan,
    DeadLetter,
    MemoryOp,
    ReflectArgs,
    ReflectionResult,
)

__all__ = [
    "MAX_ID_LEN",
    "BufferedTurn",
    "CommitPlan",
    "DeadLetter",
    "DecodeError",
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
    "check_id",
]
