"""Batch consolidation (Celery beat): merge near-duplicates and apply retention, per changed user.

``decisions`` is the pure part (which memories group, which expire), ``merge`` the optional LLM
merge of a group, ``run`` the I/O: leases, store writes, history."""

from worker.features.consolidation.run import ConsolidationReport, UserReport, consolidate_all, consolidate_user

__all__ = ["ConsolidationReport", "UserReport", "consolidate_all", "consolidate_user"]
