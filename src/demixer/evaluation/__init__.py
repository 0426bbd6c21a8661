"""Evaluation: separation metrics."""

from .metrics import sdr, si_sdr

__all__ = ["sdr", "si_sdr"]
