"""Extraction: turning new turns plus existing memories into planned memory operations."""

from worker.memory.extraction.base import ExtractionOutput, Extractor, PlannedOp
from worker.memory.extraction.llm import LLMExtractor
from worker.memory.extraction.offline import OfflineExtractor

__all__ = ["ExtractionOutput", "Extractor", "LLMExtractor", "OfflineExtractor", "PlannedOp"]
