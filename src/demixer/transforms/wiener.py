"""Multichannel Wiener filtering refined by expectation-maximisation (EM).

The model of Duong, Vincent & Gribonval (2010) as used by Open-Unmix (norbert): every
source j at bin (f, n) is a zero-mean complex Gaussian with covariance ``v_j(f,n) R_j(f)``,
where ``v_j`` is a power spectral density and ``R_j`` a ``C x C`` spatial covariance.
EM alternates the posterior means (the Wiener estimates) and re-estimates of ``v_j``/``R_j``.

Memory stays bounded on long inputs: the frames are processed in windows of
``window_frames``, each with its own spatial covariances.
"""

from __future__ import annotations

import torch
from torch import Tensor

_EPS = 1e-10


_REG = 1e-4  # added to every spatial covariance (as norbert's sqrt(float eps)), keeps inverses finite


def _covariance(y: Tensor, v: Tensor) -> Tensor:
    """Spatial covariance per source and bin. y: [F,N,C,J] complex; v: [F,N,J] -> [F,C,C,J]."""
    num = torch.einsum("fncj,fndj->fcdj", y, y.conj())
    R = num / (v.sum(dim=1)[:, None, None, :] + _EPS)
    eye = torch.eye(y.shape[2], dtype=R.dtype, device=R.device)
    return R + _REG * eye[None, :, :, None]


def _wiener_step(x: Tensor, v: Tensor, R: Tensor) -> Tensor:
    """Posterior means. x: [F,N,C]; v: [F,N,J]; R: [F,C,C,J] -> y [F,N,C,J]."""
    C = x.shape[-1]
    cov_j = v[:, :, None, None, :] * R[:, None]  # [F,N,C,C,J]
    cov_x = cov_j.sum(-1) + 1e-12 * torch.eye(C, dtype=x.dtype, device=x.device)  # only matters where every v_j is 0
    inv = torch.linalg.inv(cov_x)  # [F,N,C,C]
    gain = torch.einsum("fncdj,fnde->fncej", cov_j, inv)  # [F,N,C,C,J]
    return torch.einsum("fncej,fne->fncj", gain, x)


def _em(x: Tensor, y: Tensor, iterations: int) -> Tensor:
    for _ in range(iterations):
        v = (y.abs() ** 2).mean(dim=2) + _EPS  # [F,N,J]; the floor shares bins no source claims
        R = _covariance(y, v)
        y = _wiener_step(x, v, R)
    return y


def wiener(
    magnitudes: Tensor,
    mix_spec: Tensor,
    iterations: int = 1,
    softmask: bool = False,
    residual: bool = False,
    window_frames: int = 300,
) -> Tensor:
    """Estimate complex source spectrograms from magnitude estimates and the mixture.

    Args:
        magnitudes: non-negative magnitude (or power-compressed) estimates per source.
        mix_spec: the mixture's complex STFT.
        iterations: EM iterations (0 returns the ratio-mask initialisation).
        softmask: initialise with ratio masks of ``magnitudes`` (True) or take them as
            magnitudes with the mixture's phase (False, as Open-Unmix does).
        residual: add a source that is the mixture minus the sum of the estimates.
        window_frames: frames per window; each window has its own covariances.

    Shape:
        - ``magnitudes``: ``[F, N, C, J]`` (bins, frames, channels, sources).
        - ``mix_spec``: complex ``[F, N, C]``.
        - output: complex ``[F, N, C, J]`` (``J + 1`` with ``residual``).

    With ``iterations >= 1`` the estimates sum to the mixture exactly (the Wiener gains sum
    to the identity).
    """
    assert magnitudes.dim() == 4 and mix_spec.dim() == 3, "magnitudes [F,N,C,J] and mix_spec [F,N,C] expected"
    assert magnitudes.shape[:3] == mix_spec.shape, f"shapes differ: {tuple(magnitudes.shape)} vs {tuple(mix_spec.shape)}"
    mix_spec = mix_spec.to(torch.complex64)
    magnitudes = magnitudes.float()
    if softmask:
        total = magnitudes.sum(-1, keepdim=True)
        share = torch.where(total > _EPS, magnitudes / total.clamp_min(_EPS), torch.full_like(magnitudes, 1.0 / magnitudes.shape[-1]))
        y = mix_spec[..., None] * share
    else:
        y = magnitudes * torch.exp(1j * torch.angle(mix_spec))[..., None]
    if residual:
        y = torch.cat([y, (mix_spec - y.sum(-1))[..., None]], dim=-1)
    if iterations <= 0:
        return y

    # Scale so the covariance inverses are well conditioned, as norbert does.
    scale = torch.sqrt(mix_spec.shape[0] * mix_spec.shape[1] * mix_spec.shape[2] / ((mix_spec.abs() ** 2).sum() + _EPS))
    scale = torch.clamp(scale, max=1e6)
    out = torch.empty_like(y)
    for first in range(0, mix_spec.shape[1], window_frames):
        sl = slice(first, first + window_frames)
        # double precision inside a window: the covariances can be badly conditioned
        est = _em(mix_spec[:, sl].to(torch.complex128) * scale, y[:, sl].to(torch.complex128) * scale, iterations)
        out[:, sl] = (est / scale).to(out.dtype)
    return out
