"""Extraction: turning new turns plus existing memories into planned memory operations."""

from worker.extraction.base import ExtractionOutput, Extractor, PlannedOp
from worker.extraction.llm import LLMExtractor
from worker.extraction.offline import OfflineExtractor

__all__ = ["ExtractionOutput", "Extractor", "LLMExtractor", "OfflineExtractor", "PlannedOp"]
