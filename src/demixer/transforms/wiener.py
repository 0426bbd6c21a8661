"""Multichannel Wiener filtering refined by expectation-maximisation (EM).

The model of Duong, Vincent & Gribonval (2010) as used by Open-Unmix (norbert): every
source j at bin (f, n) is a zero-mean complex Gaussian with covariance ``v_j(f,n) R_j(f)``,
where ``v_j`` is a power spectral density and ``R_j`` a ``C x C`` spatial covariance.
EM alternates the posterior means (the Wiener estimates) and re-estimates of ``v_j``/``R_j``.

Memory stays bounded on long inputs: the frames are processed in windows of
``window_frames``, each with its own spatial covariances.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from ..errors import require

_EPS = 1e-10
BIN_BLOCK = 256  # frequency bins processed at once inside a window (the result does not depend on it)


@dataclass(frozen=True)
class EMConvention:
    """The small constants and scaling that make one EM implementation's numbers.

    Attributes:
        psd_floor: added to every power spectral density ``v_j`` (shares bins no source claims).
        source_reg: added to the diagonal of every spatial covariance ``R_j``.
        mixture_reg: added to the diagonal of the mixture covariance before it is inverted.
        scaling: ``energy`` (scale a window to unit mean power, as norbert) or ``peak`` (divide by
            ``max(1, max|x| / 10)``, as Open-Unmix's ``filtering.wiener``).
        dtype: complex dtype inside a window.
    """

    psd_floor: float
    source_reg: float
    mixture_reg: float
    scaling: str
    dtype: torch.dtype


#: norbert's constants (sqrt(float eps) on every R_j), in double precision: the default.
NORBERT = EMConvention(psd_floor=_EPS, source_reg=1e-4, mixture_reg=1e-12, scaling="energy", dtype=torch.complex128)
#: ``openunmix.filtering.wiener`` (float32, sqrt(1e-10) on the mixture covariance): its outputs to 1e-4.
OPEN_UNMIX = EMConvention(psd_floor=0.0, source_reg=0.0, mixture_reg=1e-5, scaling="peak", dtype=torch.complex64)


def _covariance(y: Tensor, v: Tensor, reg: float = 1e-4) -> Tensor:
    """Spatial covariance per source and bin. y: [F,N,C,J] complex; v: [F,N,J] -> [F,C,C,J]."""
    num = torch.einsum("fncj,fndj->fcdj", y, y.conj())
    R = num / (v.sum(dim=1)[:, None, None, :] + _EPS)
    if reg:
        R = R + reg * torch.eye(y.shape[2], dtype=R.dtype, device=R.device)[None, :, :, None]
    return R


def _wiener_step(x: Tensor, v: Tensor, R: Tensor, mixture_reg: float = 1e-12) -> Tensor:
    """Posterior means ``y_j = v_j R_j Cx^-1 x`` with ``Cx = sum_j v_j R_j``, any channel count.

    x: [F,N,C]; v: [F,N,J]; R: [F,C,C,J] -> y [F,N,C,J]. (``Cx^-1 x`` is solved once for all sources.)
    """
    C = x.shape[-1]
    cov_x = torch.einsum("fnj,fcdj->fncd", v.to(R.dtype), R)
    cov_x = cov_x + mixture_reg * torch.eye(C, dtype=cov_x.dtype, device=x.device)  # only matters where every v_j is 0
    z = torch.linalg.solve(cov_x, x[..., None])[..., 0]  # [F,N,C]
    return torch.einsum("fcdj,fnd->fncj", R, z) * v[:, :, None, :]


def _em(x: Tensor, y: Tensor, iterations: int, style: EMConvention = NORBERT) -> Tensor:
    """``iterations`` EM steps from the estimates ``y`` (any channel count)."""
    for _ in range(iterations):
        v = torch.view_as_real(y).square().sum(-1).mean(dim=2) + style.psd_floor  # [F,N,J]
        R = _covariance(y, v, style.source_reg)
        y = _wiener_step(x, v, R, style.mixture_reg)
    return y


def _weighted(v: Tensor, r: Tensor) -> Tensor:
    """``sum_j v[f, n, j] r[f, j]`` for real ``v``, real or complex ``r`` -> [F, N]."""
    if r.is_complex():
        return torch.complex(_weighted(v, r.real), _weighted(v, r.imag))
    return torch.bmm(v, r[..., None])[..., 0]


def _em_small(
    x: Tensor,
    iterations: int,
    style: EMConvention,
    mags: Tensor | None = None,
    phase: Tensor | None = None,
    y: Tensor | None = None,
) -> Tensor:
    """EM for one or two channels in closed form, equal to :func:`_em`.

    The spatial covariances are kept as their real diagonal and (stereo) complex off-diagonal
    entry, the mixture covariance is inverted by hand (it is Hermitian), and the first iteration
    starts from the magnitudes and the mixture's phase without forming the complex estimates.

    Shape: x [F,N,C] complex; ``mags`` [F,N,C,J] with ``phase`` [F,N,C] (or ``y`` [F,N,C,J]) -> [F,N,C,J].
    """
    C = x.shape[-1]
    cross: tuple[Tensor, Tensor | None] | None
    for it in range(iterations):
        if it == 0 and mags is not None and phase is not None:
            power = [mags[:, :, c].square() for c in range(C)]  # [F,N,J] real
            cross = (mags[:, :, 0] * mags[:, :, 1], phase[..., 0] * phase[..., 1].conj()) if C == 2 else None
        else:
            y = cast(Tensor, y)  # given, or estimated by the iteration before
            power = [torch.view_as_real(y[:, :, c]).square().sum(-1) for c in range(C)]
            cross = (y[:, :, 0] * y[:, :, 1].conj(), None) if C == 2 else None
        v = cast(Tensor, sum(power)) / C + style.psd_floor  # [F,N,J]
        denom = v.sum(dim=1) + _EPS  # [F,J]
        diag = [p.sum(dim=1) / denom + style.source_reg for p in power]  # R_j[c, c], [F,J] real
        if cross is not None:
            prod, q = cross
            if q is None:
                off = prod.sum(dim=1) / denom  # R_j[0, 1], [F,J] complex
            else:  # sum_n m0 m1 p0 conj(p1): one batched product of real weights with the phase products
                off = (
                    torch.complex(
                        torch.bmm(prod.transpose(1, 2), q.real[..., None])[..., 0],
                        torch.bmm(prod.transpose(1, 2), q.imag[..., None])[..., 0],
                    )
                    / denom
                )
            a = _weighted(v, diag[0]) + style.mixture_reg
            d = _weighted(v, diag[1]) + style.mixture_reg
            b = _weighted(v, off)
            det = a * d - (b.real.square() + b.imag.square())  # real: Cx is Hermitian
            z0 = torch.view_as_real((d * x[..., 0] - b * x[..., 1]) / det)[..., None, :]  # [F,N,1,2]
            z1 = torch.view_as_real((a * x[..., 1] - b.conj() * x[..., 0]) / det)[..., None, :]
            # y_j = v_j R_j z in real arithmetic (a real factor times a complex one must not promote to complex)
            vd0, vd1 = (v * r[:, None] for r in diag)  # [F,N,J]
            vr, vi = v * off.real[:, None], v * off.imag[:, None]
            out = torch.empty(*v.shape, 2, 2, dtype=vd0.dtype, device=x.device)  # [F,N,J, channel, re/im]
            out[..., 0, 0] = vd0 * z0[..., 0] + vr * z1[..., 0] - vi * z1[..., 1]
            out[..., 0, 1] = vd0 * z0[..., 1] + vr * z1[..., 1] + vi * z1[..., 0]
            out[..., 1, 0] = vr * z0[..., 0] + vi * z0[..., 1] + vd1 * z1[..., 0]  # conj(R01) z0 + R11 z1
            out[..., 1, 1] = vr * z0[..., 1] - vi * z0[..., 0] + vd1 * z1[..., 1]
            y = torch.view_as_complex(out).transpose(2, 3)  # [F,N,C,J]
        else:
            z = torch.view_as_real(x[..., 0] / (_weighted(v, diag[0]) + style.mixture_reg))[..., None, :]  # [F,N,1,2]
            y = torch.view_as_complex((v * diag[0][:, None])[..., None] * z)[:, :, None]
    return cast(Tensor, y)


def wiener(
    magnitudes: Tensor,
    mix_spec: Tensor,
    iterations: int = 1,
    softmask: bool = False,
    residual: bool = False,
    window_frames: int = 300,
    convention: EMConvention = NORBERT,
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
        convention: the EM's constants and precision (:data:`NORBERT`, or :data:`OPEN_UNMIX` to
            reproduce Open-Unmix's post-filter).

    Shape:
        - ``magnitudes``: ``[F, N, C, J]`` (bins, frames, channels, sources).
        - ``mix_spec``: complex ``[F, N, C]``.
        - output: complex ``[F, N, C, J]`` (``J + 1`` with ``residual``).

    With ``iterations >= 1`` the estimates sum to the mixture exactly (the Wiener gains sum
    to the identity).
    """
    require(magnitudes.dim() == 4 and mix_spec.dim() == 3, "magnitudes [F,N,C,J] and mix_spec [F,N,C] expected")
    require(
        magnitudes.shape[:3] == mix_spec.shape, f"shapes differ: {tuple(magnitudes.shape)} vs {tuple(mix_spec.shape)}"
    )
    mix_spec = mix_spec.to(torch.complex64)
    magnitudes = magnitudes.float()
    phase: Tensor | None = None
    y: Tensor | None = None  # the initial estimates; none on the fast path, which starts from the magnitudes
    fast = iterations > 0 and mix_spec.shape[-1] <= 2 and not (softmask or residual)  # EM from the magnitudes directly
    if softmask:
        total = magnitudes.sum(-1, keepdim=True)
        share = torch.where(
            total > _EPS, magnitudes / total.clamp_min(_EPS), torch.full_like(magnitudes, 1.0 / magnitudes.shape[-1])
        )
        y = mix_spec[..., None] * share
    else:
        size = mix_spec.abs()
        phase = torch.where(size > 0, mix_spec / size.clamp_min(1e-30), torch.ones_like(mix_spec))  # e^{i angle}
        y = None if fast else magnitudes * phase[..., None]
    if residual:  # never on the fast path
        y = cast(Tensor, y)
        y = torch.cat([y, (mix_spec - y.sum(-1))[..., None]], dim=-1)
    if iterations <= 0:  # never on the fast path
        return cast(Tensor, y)

    small = mix_spec.shape[-1] <= 2
    real = torch.float64 if convention.dtype == torch.complex128 else torch.float32
    out = torch.empty(magnitudes.shape, dtype=torch.complex64) if fast else torch.empty_like(cast(Tensor, y))
    for first in range(0, mix_spec.shape[1], window_frames):
        sl = slice(first, first + window_frames)
        x_w = mix_spec[:, sl]
        if convention.scaling == "energy":  # unit mean power: well-conditioned inverses (norbert)
            scale = float(torch.sqrt(x_w.numel() / (x_w.abs().square().sum() + _EPS)).clamp(max=1e6))
        else:  # Open-Unmix: only loud windows are scaled down
            scale = 1.0 / max(float(x_w.abs().max()) / 10.0, 1.0)
        # every bin has its own covariances: blocks of bins give the same result with less memory at once
        for lo in range(0, mix_spec.shape[0], BIN_BLOCK):
            fb = slice(lo, lo + BIN_BLOCK)
            x_b = x_w[fb].to(convention.dtype) * scale
            if fast:
                est = _em_small(
                    x_b,
                    iterations,
                    convention,
                    mags=(magnitudes[fb, sl] * scale).to(real),
                    phase=cast(Tensor, phase)[fb, sl].to(convention.dtype),
                )
            elif small:
                est = _em_small(x_b, iterations, convention, y=cast(Tensor, y)[fb, sl].to(convention.dtype) * scale)
            else:
                est = _em(x_b, cast(Tensor, y)[fb, sl].to(convention.dtype) * scale, iterations, convention)
            out[fb, sl] = est.mul_(1.0 / scale)
    return out
