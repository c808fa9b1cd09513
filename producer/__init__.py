"""What a chat server imports: hand turns to Reverie in one Redis round trip.

Depends on redis and pydantic only; never imports celery, litellm or qdrant-client.
"""

from producer.client import AsyncProducer, Producer
from producer.config import ProducerConfig
from producer.errors import InvalidRequest, InvalidSubmission, ProducerError, ProducerUnavailable
from producer.keys import Keys
from producer.langmem import ReflectionExecutor
from schemas.messages import Message, SubmitReceipt
from schemas.status import LastReflection, ThreadStatus, UserStatus

__all__ = [
    "AsyncProducer",
    "InvalidRequest",
    "InvalidSubmission",
    "Keys",
    "LastReflection",
    "Message",
    "Producer",
    "ProducerConfig",
    "ProducerError",
    "ProducerUnavailable",
    "ReflectionExecutor",
    "SubmitReceipt",
    "ThreadStatus",
    "UserStatus",
]
