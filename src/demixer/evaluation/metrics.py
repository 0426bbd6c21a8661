"""Separation metrics. Every function takes keyword-only ``reference=`` and ``estimate=``.

``sdr`` is the signal-to-distortion ratio of the whole signal, ``10 log10(|s|² / |s - ŝ|²)``
(the "utterance SDR" used by the MDX challenges); ``si_sdr`` is scale-invariant SDR
(Le Roux et al. 2019). BSSEval v4 comes with the evaluation module.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-10


def sdr(*, reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB over all channels and samples. Shape: any, equal."""
    ref, est = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    assert ref.shape == est.shape, f"reference {ref.shape} and estimate {est.shape} differ"
    return float(10 * np.log10((np.sum(ref ** 2) + _EPS) / (np.sum((ref - est) ** 2) + _EPS)))


def si_sdr(*, reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB, per channel then averaged. Shape: ``[C, T]`` or ``[T]``."""
    ref, est = np.atleast_2d(np.asarray(reference, np.float64)), np.atleast_2d(np.asarray(estimate, np.float64))
    assert ref.shape == est.shape, f"reference {ref.shape} and estimate {est.shape} differ"
    ref = ref - ref.mean(-1, keepdims=True)
    est = est - est.mean(-1, keepdims=True)
    alpha = (ref * est).sum(-1, keepdims=True) / ((ref ** 2).sum(-1, keepdims=True) + _EPS)
    target = alpha * ref
    noise = est - target
    return float(np.mean(10 * np.log10(((target ** 2).sum(-1) + _EPS) / ((noise ** 2).sum(-1) + _EPS))))
