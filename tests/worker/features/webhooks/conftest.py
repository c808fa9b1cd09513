from tests.support.webhooks import make_webhooks, receiver, secret  # noqa: F401  (fixtures)
