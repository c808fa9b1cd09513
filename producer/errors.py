"""Errors a chat server can get from the producer."""


class ProducerError(Exception):
    """Base class for producer errors."""


class InvalidRequest(ProducerError, ValueError):
    """A call was refused before touching Redis. The message names each bad field (or
    argument) but never echoes message text."""

    what = "request"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid {self.what}: " + "; ".join(problems))


class InvalidSubmission(InvalidRequest):
    """The submission was refused before anything was written."""

    what = "submission"


class ProducerUnavailable(ProducerError, ConnectionError):
    """Redis could not be reached within the producer's timeout (policy ``raise``)."""


class StoreUnavailable(ProducerError):
    """Qdrant could not be reached or failed server-side; safe to retry later. Never carries secrets."""


class StoreLocked(StoreUnavailable):
    """Local-mode Qdrant is a folder one process owns; another process opened it first."""


class LayoutMismatch(ProducerError):
    """Redis holds Reverie state in another shard layout than this process's (``REVERIE_SHARDS``,
    Redis Cluster): the message says both and what to do. Nothing was written."""


class ShardClosed(ProducerError):
    """``reverie reshard`` is moving this user's shard: the submit was refused (nothing written)
    and counts as Redis being unavailable for the ``on_unavailable`` policy."""
