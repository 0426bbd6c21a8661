"""The quality estimator: a stem's SDR per second and the chance its source is absent, without a reference.

Input: the per-second features of one stem (:mod:`demixer.estimator.features`), its stem class (see
:func:`stem_class`), and the features' mean over the whole track, so a window is judged in its track's context.
Per window: a linear embedding, two residual dilated temporal convolutions (5 windows each side in all), and two
heads, the predicted SDR in dB and the logit of "the true source is silent here".

The whole track's SDR follows from the windows' (:func:`track_sdr_from_windows`): a window's error energy is its
source energy over ``10^(SDR/10)``, the source energy read from the stem's own energy where the source is
predicted present.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .features import FEATURES

STEM_CLASSES = ("vocals", "drums", "bass", "other", "accompaniment", "speech", "noise", "music")
_CLASS_OF = {
    "vocals": "vocals",
    "voice": "vocals",
    "singing": "vocals",
    "drums": "drums",
    "percussion": "drums",
    "bass": "bass",
    "other": "other",
    "others": "other",
    "guitar": "other",
    "piano": "other",
    "no_vocals": "accompaniment",
    "accompaniment": "accompaniment",
    "instrumental": "accompaniment",
    "speech": "speech",
    "target": "speech",
    "noise": "noise",
    "effects": "noise",
    "residual": "noise",
    "music": "music",
}
SDR_SCALE = 10.0  # the SDR head's output unit, dB


def stem_class(name: str) -> str | None:
    """The estimator's class of a stem name (``speaker1`` is speech, ``no_drums`` accompaniment); ``None`` when
    the name tells nothing."""
    name = name.lower()
    if name.startswith("speaker"):
        return "speech"
    if name.startswith("no_"):
        return "accompaniment"
    return _CLASS_OF.get(name)


def class_vector(name: str) -> np.ndarray:
    """One-hot of :func:`stem_class` over :data:`STEM_CLASSES` (all zeros for an unknown name)."""
    out = np.zeros(len(STEM_CLASSES), np.float32)
    cls = stem_class(name)
    if cls is not None:
        out[STEM_CLASSES.index(cls)] = 1.0
    return out


class _TemporalBlock(nn.Module):
    def __init__(self, width: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel_size=5, padding=2 * dilation, dilation=dilation)
        self.norm = nn.GroupNorm(1, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.drop(torch.nn.functional.gelu(self.norm(self.conv(h))))


class QualityEstimator(nn.Module):
    def __init__(self, width: int = 64, dropout: float = 0.2):
        super().__init__()
        self.embed = nn.Linear(2 * FEATURES + len(STEM_CLASSES), width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(_TemporalBlock(width, 1, dropout), _TemporalBlock(width, 2, dropout))
        self.heads = nn.Conv1d(width, 2, kernel_size=1)

    def forward(self, features: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape: ``features [B, W, FEATURES]``, ``classes [B, len(STEM_CLASSES)]`` -> per window
        ``(SDR in dB [B, W], silent-source logit [B, W])``."""
        context = features.mean(1, keepdim=True).expand_as(features)
        stem = classes[:, None, :].expand(-1, features.shape[1], -1)
        h = self.drop(torch.nn.functional.gelu(self.embed(torch.cat([features, context, stem], dim=-1))))
        out = self.heads(self.blocks(h.transpose(1, 2)))
        return out[:, 0] * SDR_SCALE, out[:, 1]


def track_sdr_from_windows(sdr: np.ndarray, silent_p: np.ndarray, stem_energy: np.ndarray) -> float:
    """The whole track's SDR from per-window predictions: ``10 log10(Σ S_w / Σ S_w 10^(-SDR_w/10))`` with
    ``S_w`` the stem's energy in window ``w`` weighted by the chance its source is there; ``nan`` when no
    window holds any."""
    source = np.asarray(stem_energy, np.float64) * (1 - np.asarray(silent_p, np.float64))
    if source.sum() <= 0:
        return float("nan")
    error = source * 10 ** (-np.asarray(sdr, np.float64) / 10)
    return float(10 * np.log10(source.sum() / max(error.sum(), 1e-30)))
