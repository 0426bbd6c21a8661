"""Oracle separators: upper bounds computed from the true sources (SiSEC/sigsep oracles).

- ``irm``: ideal ratio mask ``|S_j|^p / sum_k |S_k|^p`` (``p = 1``, "IRM1"), per channel;
- ``ibm``: ideal binary mask, each bin to the loudest source;
- ``mwf``: multichannel Wiener filter with the sources' true power spectral densities and
  spatial covariance matrices (time-invariant per frequency, over the whole track).

They need the references, so they run on whole signals outside the chunked engine; the
evaluation accepts ``oracle-irm``, ``oracle-ibm`` and ``oracle-mwf`` wherever it takes a model.
"""

from __future__ import annotations

import numpy as np
import torch

from ..transforms import STFT
from ..transforms.wiener import _wiener_step

ORACLES = ("irm", "ibm", "mwf")
_EPS = 1e-10


def oracle_separate(
    kind: str,
    references: np.ndarray,
    mixture: np.ndarray | None = None,
    *,
    n_fft: int = 4096,
    hop_length: int = 1024,
    window_frames: int = 512,
) -> np.ndarray:
    """Estimate the sources of ``mixture`` (default: the sum of ``references``) with an oracle.

    Shape: ``references [S, C, T]``, ``mixture [C, T]`` -> ``[S, C, T]``.
    """
    if kind not in ORACLES:
        raise ValueError(f"unknown oracle {kind!r} (choose from {', '.join(ORACLES)})")
    refs = torch.from_numpy(np.ascontiguousarray(references, dtype=np.float64))
    mix = refs.sum(0) if mixture is None else torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float64))
    stft = STFT(n_fft, hop_length)
    X = stft(mix)  # [C, F, N]
    S = stft(refs)  # [S, C, F, N]
    if kind in ("irm", "ibm"):
        mags = S.abs()
        if kind == "irm":
            masks = mags / (mags.sum(0, keepdim=True) + _EPS)
        else:
            masks = (mags == mags.amax(0, keepdim=True)).double()
            masks = masks / masks.sum(0, keepdim=True)  # ties share the bin
        est = masks * X[None]
    else:
        y = S.permute(2, 3, 1, 0)  # [F, N, C, J]
        v = (y.abs() ** 2).mean(dim=2) + _EPS  # [F, N, J]
        R = torch.einsum("fncj,fndj->fcdj", y, y.conj()) / (v.sum(dim=1)[:, None, None, :])
        R = R + 1e-4 * torch.eye(y.shape[2], dtype=R.dtype)[None, :, :, None]
        x = X.permute(1, 2, 0)  # [F, N, C]
        out = torch.empty_like(y)
        for first in range(0, x.shape[1], window_frames):
            sl = slice(first, first + window_frames)
            out[:, sl] = _wiener_step(x[:, sl], v[:, sl], R)
        est = out.permute(3, 2, 0, 1)
    return stft.inverse(est, refs.shape[-1]).numpy()


__all__ = ["ORACLES", "oracle_separate"]
