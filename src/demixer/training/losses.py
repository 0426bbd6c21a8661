"""Training losses over estimated and reference sources.

Every loss takes ``(estimate, reference)`` of shape ``[B, S, C, T]`` and returns a scalar;
:func:`pit` wraps any of them to be invariant to the order of the sources (speakers).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor

from ..transforms import STFT

_EPS = 1e-8


def l1_wave(estimate: Tensor, reference: Tensor) -> Tensor:
    """Mean absolute error of the waveforms. Shape: ``[B, S, C, T]`` (per item: ``[B, S]``)."""
    return (estimate - reference).abs().mean(dim=(-2, -1))


class L1Spec:
    """Mean absolute error of STFT magnitudes (one resolution)."""

    def __init__(self, n_fft: int = 2048, hop_length: int = 512) -> None:
        self.stft = STFT(n_fft, hop_length)

    def __call__(self, estimate: Tensor, reference: Tensor) -> Tensor:
        stft = self.stft.to(estimate.device)
        return (stft(estimate).abs() - stft(reference).abs()).abs().mean(dim=(-3, -2, -1))


class MultiResolutionSTFT:
    """Log-magnitude plus linear-magnitude L1 over several STFT resolutions.

    Spectral convergence (Yamamoto et al. 2020) divides by the reference's norm, which explodes on
    the silent stems real songs have; both terms here stay finite for silent references.
    """

    def __init__(self, resolutions: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512))) -> None:
        self.stfts = [STFT(n, h) for n, h in resolutions]

    def __call__(self, estimate: Tensor, reference: Tensor) -> Tensor:
        total = estimate.new_zeros(())
        for stft in self.stfts:
            stft = stft.to(estimate.device)
            e, r = stft(estimate).abs(), stft(reference).abs()
            log = (torch.log(e + 1e-5) - torch.log(r + 1e-5)).abs().mean(dim=(-3, -2, -1))
            lin = (e - r).abs().mean(dim=(-3, -2, -1))
            total = total + log + lin
        return total / len(self.stfts)


class CompressedSpectral:
    """Squared error of power-law compressed spectra, magnitude and complex, over several resolutions.

    ``|X|^c`` with ``c = 0.3`` (DeepFilterNet's spectral loss, after Ephrat et al. 2018): the compression lifts the
    quiet time-frequency regions between harmonics and after word ends that a waveform SDR barely weighs but that
    listeners (and PESQ) hear as residual noise. The complex term ``|X|^c · e^{jφ}`` keeps the phase honest.
    The STFTs are normalised (``n_fft ** -0.5``), so the scale does not depend on the resolution.
    ``under`` > 0 makes a magnitude below the reference's cost ``1 + under`` times more than one above it (an
    asymmetric loss, as VoiceFilter-Lite's): a denoiser then errs towards keeping speech rather than removing it.
    Shape: ``[B, S, C, T]`` -> ``[B, S]``.
    """

    def __init__(
        self,
        resolutions: tuple[tuple[int, int], ...] = ((256, 64), (512, 128), (1024, 256)),
        power: float = 0.3,
        under: float = 0.0,
    ) -> None:
        self.stfts = [STFT(n, h, normalized=True) for n, h in resolutions]
        self.power, self.under = power, under

    def _compress(self, spec: Tensor) -> tuple[Tensor, Tensor]:
        mag2 = spec.real**2 + spec.imag**2 + 1e-12  # finite gradient at zero
        scale = mag2 ** ((self.power - 1) / 2)
        return mag2 ** (self.power / 2), torch.view_as_real(spec * scale)

    def __call__(self, estimate: Tensor, reference: Tensor) -> Tensor:
        total = estimate.new_zeros(())
        for stft in self.stfts:
            stft = stft.to(estimate.device)
            (em, ec), (rm, rc) = self._compress(stft(estimate)), self._compress(stft(reference))
            diff = (em - rm).pow(2) + self.under * (rm - em).clamp(min=0).pow(2)
            total = total + diff.mean(dim=(-3, -2, -1)) + (ec - rc).pow(2).sum(-1).mean(dim=(-3, -2, -1))
        return total / len(self.stfts)


def neg_si_sdr(estimate: Tensor, reference: Tensor) -> Tensor:
    """Negative scale-invariant SDR in dB, averaged over channels. Shape: ``[B, S, C, T]`` -> ``[B, S]``."""
    ref = reference - reference.mean(-1, keepdim=True)
    est = estimate - estimate.mean(-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + _EPS)
    target = alpha * ref
    ratio = target.pow(2).sum(-1) / ((est - target).pow(2).sum(-1) + _EPS)
    return -(10 * torch.log10(ratio + _EPS)).mean(-1)


def neg_sdr(estimate: Tensor, reference: Tensor) -> Tensor:
    """Negative signal-to-distortion ratio in dB (no scale invariance). Shape: ``[B, S, C, T]`` -> ``[B, S]``."""
    num = reference.pow(2).sum(dim=(-2, -1))
    den = (reference - estimate).pow(2).sum(dim=(-2, -1))
    return -10 * torch.log10((num + _EPS) / (den + _EPS))


class WindowedSDR:
    """Negative SDR per window, floored by the mixture: what museval's median over 1 s windows rewards.

    In each window of ``window`` samples, ``10 log10((|s|² + τ|x|²) / (|s - ŝ|² + τ|x|²))`` with ``x`` the mixture
    (the sum of the references: stems) and ``τ`` = ``floor_db`` below it. A window where a source is silent scores
    0 dB when its estimate is silent too and pays, in dB, for what leaks into it, which a waveform L1 barely sees;
    the floor keeps such windows finite. Averaged over windows (a tail shorter than a window is left out unless the
    clip is shorter than one). Shape: ``[B, S, C, T]`` -> ``[B, S]``.
    """

    def __init__(self, window: int = 44100, floor_db: float = -30.0) -> None:
        self.window, self.floor = window, 10 ** (floor_db / 10)

    def __call__(self, estimate: Tensor, reference: Tensor) -> Tensor:
        signal, error, mix = window_energies(estimate, reference, self.window)
        floor = self.floor * mix + _EPS
        return -(10 * torch.log10((signal + floor) / (error + floor))).mean(-1)


class ActiveWindowSDR:
    """Negative SDR per window, over the windows where the source is active: what museval's medians score.

    Like :class:`WindowedSDR` (same mixture floor), but a window counts only when the reference's energy there is
    within ``active_db`` of the mixture's; the others are left out, as museval leaves out silent windows. Scoring
    them (``sdr_win``) makes any leakage into a quiet window cost up to ``-floor_db`` dB, and a weak model then
    learns to stay silent everywhere (seen on the 4-stem run: vocals and bass went silent). Pair it with a term
    that sees every sample (``l1_wave``) so leakage into quiet parts still costs something. Items where the source
    is never active add nothing. Shape: ``[B, S, C, T]`` -> ``[B, S]``.
    """

    def __init__(self, window: int = 44100, floor_db: float = -30.0, active_db: float = -30.0) -> None:
        self.window, self.floor, self.active = window, 10 ** (floor_db / 10), 10 ** (active_db / 10)

    def __call__(self, estimate: Tensor, reference: Tensor) -> Tensor:
        signal, error, mix = window_energies(estimate, reference, self.window)
        floor = self.floor * mix + _EPS
        sdr = 10 * torch.log10((signal + floor) / (error + floor))
        active = (signal > self.active * mix).to(sdr.dtype)
        return -(sdr * active).sum(-1) / active.sum(-1).clamp(min=1)


def window_energies(estimate: Tensor, reference: Tensor, window: int) -> tuple[Tensor, Tensor, Tensor]:
    """Energy per window of ``window`` samples: reference ``[B, S, n]``, error ``[B, S, n]``, mixture (the sum
    of the references) ``[B, 1, n]``. A tail shorter than a window is left out unless the clip is shorter than one."""
    t = reference.shape[-1]
    w = min(window, t)
    n = t // w
    est, ref = (x[..., : n * w].unflatten(-1, (n, w)) for x in (estimate, reference))  # [B, S, C, n, w]
    return (
        ref.pow(2).sum(dim=(2, 4)),
        (ref - est).pow(2).sum(dim=(2, 4)),
        ref.sum(1, keepdim=True).pow(2).sum(dim=(2, 4)),
    )


def window_sdr(estimate: Tensor, reference: Tensor, window: int, silent: float) -> Tensor:
    """SDR in dB per window, NaN where the reference's mean-square power is under ``silent`` (museval leaves
    such windows out of its medians). Shape: ``[B, S, C, T]`` -> ``[B, S, n]``."""
    signal, error, _ = window_energies(estimate, reference, window)
    samples = reference.shape[-2] * min(window, reference.shape[-1])
    sdr = 10 * torch.log10((signal + _EPS) / (error + _EPS))
    return sdr.masked_fill(signal / samples <= silent, float("nan"))


def _make(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    table: dict[str, Callable[[], Callable[[Tensor, Tensor], Tensor]]] = {
        "l1_wave": lambda: l1_wave,
        "l1_spec": L1Spec,
        "mrstft": MultiResolutionSTFT,
        "cspec": CompressedSpectral,
        "cspec_asym": lambda: CompressedSpectral(under=3.0),
        "si_sdr": lambda: neg_si_sdr,
        "sdr": lambda: neg_sdr,
        "sdr_win": WindowedSDR,
        "sdr_active": ActiveWindowSDR,
    }
    if name not in table:
        raise ValueError(f"unknown loss {name!r} (choose from {', '.join(table)})")
    return table[name]()


LOSS_NAMES = ("l1_wave", "l1_spec", "mrstft", "cspec", "cspec_asym", "si_sdr", "sdr", "sdr_win", "sdr_active")


class _PerItem:
    """Weighted sum of loss terms, per item and source: ``[B, S, C, T]`` pairs -> ``[B, S]``."""

    def __init__(self, terms: dict[str, float]) -> None:
        self.terms = [(_make(name), float(w)) for name, w in terms.items() if w]
        if not self.terms:
            raise ValueError("the loss needs at least one term with a non-zero weight")

    def __call__(self, estimate: Tensor, reference: Tensor) -> Tensor:
        return cast(Tensor, sum(w * fn(estimate, reference) for fn, w in self.terms))


def _batched_sources(fn: _PerItem, estimate: Tensor, reference: Tensor) -> Tensor:
    """Apply a per-source loss to every (estimate i, reference j) pair. Returns ``[B, S, S]``."""
    s = estimate.shape[1]
    est = estimate[:, :, None].expand(-1, -1, s, -1, -1).reshape(estimate.shape[0], s * s, *estimate.shape[2:])
    ref = reference[:, None].expand(-1, s, -1, -1, -1).reshape(reference.shape[0], s * s, *reference.shape[2:])
    return fn(est, ref).reshape(estimate.shape[0], s, s)


def pit_loss(fn: _PerItem, *, reference: Tensor, estimate: Tensor) -> tuple[Tensor, Tensor]:
    """Permutation-invariant loss: the best source order per item (the training counterpart of
    :func:`demixer.evaluation.metrics.pit`, with the same keyword-only argument names).

    Shape: ``reference``, ``estimate``: ``[B, S, C, T]``.

    Returns:
        ``(loss, perm)``: the mean of the best per-item losses, and the permutation ``[B, S]``
        (``perm[b, j]`` is the estimate matched to reference ``j``).
    """
    pair = _batched_sources(fn, estimate, reference)  # [B, S_est, S_ref]
    s = pair.shape[1]
    perms = torch.tensor(list(itertools.permutations(range(s))), device=pair.device)  # [P, S]
    cost = pair[:, perms, torch.arange(s, device=pair.device)].mean(-1)  # [B, P]
    best = cost.argmin(-1)
    return cost.gather(1, best[:, None]).mean(), perms[best]


class TrainingLoss:
    """The configured objective: weighted terms, optionally permutation-invariant.

    Args:
        terms: loss name -> weight (names from :data:`LOSS_NAMES`).
        pit: match estimates to references in the best order (speaker separation).

    Shape:
        ``__call__``: ``estimate, reference [B, S, C, T]`` -> scalar.
    """

    def __init__(self, terms: dict[str, float], pit: bool = False) -> None:
        self.per_item = _PerItem(terms)
        self.pit = pit

    def __call__(self, estimate: Tensor, reference: Tensor) -> Tensor:
        if self.pit:
            return pit_loss(self.per_item, reference=reference, estimate=estimate)[0]
        return self.per_item(estimate, reference).mean()
