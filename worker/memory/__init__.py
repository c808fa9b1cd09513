"""The memory model: the store over Qdrant (the only memory store), which existing memories a
reflection sees (retrieval), extraction (LLM or offline), planning ops into final writes, the
LLM client, and the audit history. Imports nothing from the pipeline."""
