"""Training-free separators: HPSS, REPET-SIM, centre-channel karaoke, spectral gating."""

from .center import CenterExtraction
from .hpss import HPSS
from .repet import RepetSim
from .spectral_gate import SpectralGate

__all__ = ["HPSS", "CenterExtraction", "RepetSim", "SpectralGate"]
