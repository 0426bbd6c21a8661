"""Evaluation: metrics (BSSEval v4, SDR, SI-SDR, PIT, PESQ, STOI), oracle separators, dataset runs
with museval-style reports, and reference-free quality signals."""

from .bsseval import BssEvalResult, bss_eval_v4
from .metrics import bss_sdr, pesq, pit, sdr, sdr_i, si_sdr, si_sdr_i, stoi
from .quality import quality_signals

__all__ = [
    "BssEvalResult",
    "bss_eval_v4",
    "bss_sdr",
    "pesq",
    "pit",
    "quality_signals",
    "sdr",
    "sdr_i",
    "si_sdr",
    "si_sdr_i",
    "stoi",
]
