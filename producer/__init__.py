"""What a chat server imports: hand turns to Reverie in one Redis round trip.

Depends on redis and pydantic only; never imports celery, litellm or qdrant-client.
"""

from producer.client import AsyncProducer, Producer
from producer.config import ProducerConfig
from producer.errors import InvalidSubmission, ProducerError, ProducerUnavailable
from producer.keys import Keys
from producer.langmem import ReflectionExecutor
from schemas.messages import Message, SubmitReceipt

__all__ = [
    "AsyncProducer",
    "InvalidSubmission",
    "Keys",
    "Message",
    "Producer",
    "ProducerConfig",
    "ProducerError",
    "ProducerUnavailable",
    "ReflectionExecutor",
    "SubmitReceipt",
]
