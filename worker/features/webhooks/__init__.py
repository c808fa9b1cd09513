"""Webhooks: every change event an endpoint subscribes to, POSTed signed, at least once.

- ``relay``: a thread beside each dispatcher (a worker bootstep, or ``reverie dispatcher``)
  reads every events stream (``WorkerKeys.event_streams()``) with one consumer group per
  endpoint and sends a ``reverie.deliver_webhook`` task (ids only) per matching entry; entries
  idle too long (a worker died) are claimed again and re-sent.
- ``deliver``: the task's core: sign, POST, acknowledge; retry with backoff; dead-letter.
- ``dlq``: the webhook dead letters (``reverie dlq webhooks``, ``replay-webhook``, ``drop-webhook``).
- ``policy``: pure rules (which answers retry, how long to wait).
- ``keys``: the Redis keys and group names of the feature.

Removing the feature means removing this folder, its task, its bootstep, its CLI module and
the forget step that reads its dead letters.
"""
