"""The separation engine: chunking, overlap-add, streaming files, stems and output naming."""

from .chunking import Chunk, OverlapAdd, chunk_weight, plan_chunks, run_chunked
from .naming import expand_inputs, plan_outputs, track_name
from .pipeline import EngineSettings, FileResult, separate_array, separate_file
from .separator import Separator, separate
from .stems import StemPlan

__all__ = [
    "Chunk",
    "EngineSettings",
    "FileResult",
    "OverlapAdd",
    "Separator",
    "StemPlan",
    "chunk_weight",
    "expand_inputs",
    "plan_chunks",
    "plan_outputs",
    "run_chunked",
    "separate",
    "separate_array",
    "separate_file",
    "track_name",
]
