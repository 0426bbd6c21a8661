"""Batch separation of large collections: local process pool or Ray, resumable, with a results manifest."""

from .manifest import ResultsManifest, collect_inputs
from .runner import ENGINES, BatchSummary, run_batch

__all__ = ["ENGINES", "BatchSummary", "ResultsManifest", "collect_inputs", "run_batch"]
