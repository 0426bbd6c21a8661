"""Channel policy: run a model with a fixed channel count on audio with any channel count.

Audio with ``C`` channels is split into groups of the model's ``M`` channels; the last
group is filled by repeating its own channels. After separation each input channel is the
mean of all its copies. So mono through a stereo model is duplicated and averaged back,
8 channels through a stereo model run as 4 stereo pairs, and output keeps the input's
channel count.
"""

from __future__ import annotations

import numpy as np


def channel_groups(channels: int, model_channels: int | None) -> list[list[int]]:
    """Input-channel indices of each group fed to the model (one list per group)."""
    if channels < 1:
        raise ValueError("audio needs at least one channel")
    if model_channels is None or model_channels == channels:
        return [list(range(channels))]
    groups = []
    for first in range(0, channels, model_channels):
        members = list(range(first, min(first + model_channels, channels)))
        groups.append([members[i % len(members)] for i in range(model_channels)])
    return groups


def split_channels(audio: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """``[C, T]`` -> ``[G, M, T]``."""
    return np.stack([audio[g] for g in groups])


def merge_channels(grouped: np.ndarray, groups: list[list[int]], channels: int) -> np.ndarray:
    """``[G, S, M, T]`` -> ``[S, C, T]``: each input channel is the mean of its copies."""
    G, S, M, T = grouped.shape
    out = np.zeros((S, channels, T), dtype=grouped.dtype)
    counts = np.zeros(channels, dtype=np.int64)
    for gi, g in enumerate(groups):
        for mi, ch in enumerate(g):
            out[:, ch] += grouped[gi, :, mi]
            counts[ch] += 1
    return out / counts[None, :, None].astype(grouped.dtype)
