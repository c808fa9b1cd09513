"""Logging setup and process-local metrics: used by every layer above, importing none of them."""
