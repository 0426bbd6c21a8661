"""Cleanup of spoken audio (``demixer clean``): dialogue separation, denoising, loudness and true-peak limiting."""

from .chain import Cleaner, CleanResult, clean
from .options import CleanOptions

__all__ = ["CleanOptions", "CleanResult", "Cleaner", "clean"]
