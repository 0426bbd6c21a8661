"""Data: training datasets (stem folders, MUSDB, speaker mixtures, noisy/clean pairs), augmentation,
synthesis of training material, and the bundled example song."""

from .augment import Augment
from .base import MixtureDataset
from .denoise import NoiseMixDataset, NoisyCleanDataset, find_pairs
from .dialogue import DialogueMixDataset
from .example import make_example
from .music import StemDataset
from .speech import SpeakerMixDataset, TargetSpeakerDataset
from .tracks import Track, find_tracks

__all__ = [
    "Augment",
    "DialogueMixDataset",
    "MixtureDataset",
    "NoiseMixDataset",
    "NoisyCleanDataset",
    "SpeakerMixDataset",
    "StemDataset",
    "TargetSpeakerDataset",
    "Track",
    "find_pairs",
    "find_tracks",
    "make_example",
]
