"""Time-frequency masks: estimating and applying them."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import require


def ratio_mask(magnitudes: Tensor, power: float = 2.0, eps: float = 1e-10, dim: int = 0) -> Tensor:
    """Soft ratio masks ``|S_j|^p / sum_k |S_k|^p`` that sum to one along ``dim``.

    Args:
        magnitudes: non-negative magnitude estimates of every source, stacked along ``dim``.
        power: 1 gives magnitude ratios, 2 the Wiener-like power ratios.

    Shape:
        ``magnitudes``: ``[..., S, ...]`` (sources on ``dim``); output: same shape.

    Where every source is zero the mask splits evenly.
    """
    p = magnitudes.clamp_min(0) ** power
    total = p.sum(dim=dim, keepdim=True)
    n = magnitudes.shape[dim]
    return torch.where(total > eps, p / total.clamp_min(eps), torch.full_like(p, 1.0 / n))


def binary_mask(magnitudes: Tensor, dim: int = 0) -> Tensor:
    """One-hot masks picking the loudest source in each bin. Shape: as :func:`ratio_mask`."""
    idx = magnitudes.argmax(dim=dim, keepdim=True)
    return torch.zeros_like(magnitudes).scatter_(dim, idx, 1.0)


def apply_mask(spec: Tensor, mask: Tensor) -> Tensor:
    """Multiply a complex spectrogram by a real mask or a complex mask.

    Shape:
        ``spec``: complex ``[..., F, N]``; ``mask``: real or complex, broadcastable to it.
    """
    return spec * mask


def complex_mask(real_imag: Tensor) -> Tensor:
    """Turn a real tensor whose last axis is (real, imag) into a complex mask.

    Shape:
        ``[..., 2]`` -> complex ``[...]``.
    """
    require(real_imag.shape[-1] == 2, f"last axis must hold (real, imag), got size {real_imag.shape[-1]}")
    return torch.view_as_complex(real_imag.float().contiguous())
