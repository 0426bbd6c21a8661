"""Separation metrics. Every function takes keyword-only ``reference=`` and ``estimate=`` (in that
order of meaning: the truth, then the guess), numpy arrays or tensors.

- ``sdr``: signal-to-distortion ratio of the whole signal, ``10 log10(|s|² / |s - ŝ|²)`` (the
  "utterance SDR" of the MDX challenges; no distortion filter).
- ``si_sdr``: scale-invariant SDR (Le Roux et al. 2019), per channel, averaged.
- ``bss_sdr``: SDR of BSSEval's ``bss_eval_sources`` (a 512-tap distortion filter on the
  source's own reference is allowed), as ``fast_bss_eval.sdr`` / ``mir_eval``.
- ``sdr_i`` / ``si_sdr_i``: improvement over using the mixture as the estimate.
- ``pit``: scores with the best assignment of estimates to references, any number of sources.
- ``pesq`` (wide/narrow band) and ``stoi`` (and ESTOI) through the ``pesq`` / ``pystoi`` packages.
- BSSEval v4 (museval's SDR/ISR/SIR/SAR): :func:`demixer.evaluation.bsseval.bss_eval_v4`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg import solve_toeplitz
from scipy.optimize import linear_sum_assignment

_EPS = 1e-10


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _pair(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    ref, est = _np(reference), _np(estimate)
    if ref.shape != est.shape:
        raise ValueError(f"reference {ref.shape} and estimate {est.shape} must have the same shape")
    return ref, est


def sdr(*, reference, estimate) -> float:
    """Signal-to-distortion ratio in dB over all channels and samples. Shape: any, equal."""
    ref, est = _pair(reference, estimate)
    return float(10 * np.log10((np.sum(ref**2) + _EPS) / (np.sum((ref - est) ** 2) + _EPS)))


def si_sdr(*, reference, estimate) -> float:
    """Scale-invariant SDR in dB, per channel then averaged. Shape: ``[C, T]`` or ``[T]``."""
    ref, est = _pair(reference, estimate)
    ref, est = np.atleast_2d(ref), np.atleast_2d(est)
    ref = ref - ref.mean(-1, keepdims=True)
    est = est - est.mean(-1, keepdims=True)
    alpha = (ref * est).sum(-1, keepdims=True) / ((ref**2).sum(-1, keepdims=True) + _EPS)
    target = alpha * ref
    noise = est - target
    return float(np.mean(10 * np.log10(((target**2).sum(-1) + _EPS) / ((noise**2).sum(-1) + _EPS))))


def sdr_i(*, reference, estimate, mixture) -> float:
    """SDR improvement: ``sdr(estimate) - sdr(mixture)`` against the same reference."""
    return sdr(reference=reference, estimate=estimate) - sdr(reference=reference, estimate=mixture)


def si_sdr_i(*, reference, estimate, mixture) -> float:
    """SI-SDR improvement: ``si_sdr(estimate) - si_sdr(mixture)`` against the same reference."""
    return si_sdr(reference=reference, estimate=estimate) - si_sdr(reference=reference, estimate=mixture)


def bss_sdr(*, reference, estimate, filter_length: int = 512) -> np.ndarray:
    """BSSEval ``bss_eval_sources`` SDR: the estimate may match a ``filter_length``-tap filtered copy
    of its reference. Equal to ``fast_bss_eval.sdr(ref, est, compute_permutation=False)``.

    Shape: ``[..., T]`` (every leading index is one source) -> ``[...]`` in dB.
    """
    ref, est = _pair(reference, estimate)
    lead = ref.shape[:-1]
    ref, est = ref.reshape(-1, ref.shape[-1]), est.reshape(-1, est.shape[-1])
    n = 1 << int(np.ceil(np.log2(ref.shape[-1] + filter_length)))
    R, E = np.fft.rfft(ref, n), np.fft.rfft(est, n)
    acf = np.fft.irfft(R * R.conj(), n)[:, :filter_length]
    xcf = np.fft.irfft(R.conj() * E, n)[:, :filter_length]  # <ref delayed k, est>
    out = np.empty(ref.shape[0])
    for i in range(ref.shape[0]):
        if acf[i, 0] <= 0:
            out[i] = np.nan
            continue
        coef = solve_toeplitz(acf[i], xcf[i])
        proj = float(coef @ xcf[i])
        total = float(est[i] @ est[i])
        out[i] = 10 * np.log10(max(proj, _EPS) / max(total - proj, _EPS))
    return out.reshape(lead)


def pit(*, reference, estimate, metric: Callable[..., float] = si_sdr) -> tuple[np.ndarray, np.ndarray]:
    """Permutation-invariant scores: each estimate is matched to one reference so that the sum of
    ``metric`` is highest (Hungarian assignment: exact for any number of sources).

    Shape: ``reference``, ``estimate``: ``[S, ...]``.

    Returns:
        ``(scores [S], perm [S])``: ``perm[j]`` is the estimate matched to reference ``j`` and
        ``scores[j]`` its score.
    """
    ref, est = _np(reference), _np(estimate)
    if ref.shape[0] != est.shape[0] or ref.shape[1:] != est.shape[1:]:
        raise ValueError(f"reference {ref.shape} and estimate {est.shape} must have the same shape")
    n = ref.shape[0]
    table = np.array([[metric(reference=ref[j], estimate=est[i]) for i in range(n)] for j in range(n)])
    rows, cols = linear_sum_assignment(-table)
    perm = cols[np.argsort(rows)]
    return table[np.arange(n), perm], perm


def pesq(*, reference, estimate, sample_rate: int, mode: str = "wb") -> float:
    """PESQ (ITU-T P.862; ``wb``: P.862.2 at 16 kHz, ``nb``: 8 kHz), resampled as needed. Mono ``[T]``."""
    from pesq import pesq as _pesq

    from ..audio import resample

    if mode not in ("wb", "nb"):
        raise ValueError(f"PESQ mode is 'wb' or 'nb', got {mode!r}")
    ref, est = _pair(reference, estimate)
    rate = 16000 if mode == "wb" else 8000
    ref = resample(np.atleast_2d(ref).mean(0, keepdims=True).astype(np.float32), sample_rate, rate)[0]
    est = resample(np.atleast_2d(est).mean(0, keepdims=True).astype(np.float32), sample_rate, rate)[0]
    return float(_pesq(rate, ref, est, mode))


def stoi(*, reference, estimate, sample_rate: int, extended: bool = False) -> float:
    """STOI (Taal et al. 2011) or, with ``extended``, ESTOI (Jensen & Taal 2016). Mono ``[T]``."""
    from pystoi import stoi as _stoi

    ref, est = _pair(reference, estimate)
    return float(_stoi(np.atleast_2d(ref).mean(0), np.atleast_2d(est).mean(0), sample_rate, extended=extended))
