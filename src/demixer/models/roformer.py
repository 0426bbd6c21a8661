"""Band-split RoFormer (Lu et al. 2023) and Mel-band RoFormer (Wang et al. 2023).

Axial transformers over time and frequency bands of the complex spectrogram, with rotary
embeddings, then one mask estimator per stem predicting complex masks. Their state dicts have
the layout of the ``bs-roformer`` package 0.3.10 (``BSRoformer`` / ``MelBandRoformer``), which
the community's published checkpoints (e.g. the BS-RoFormer "viperx 317" and Mel-RoFormer
"Kim vocals" models) use: ``load_state_dict`` takes them as they are.

einops axes: ``b`` batch, ``s`` audio channel, ``n`` stems, ``f`` frequency, ``t`` time frames,
``c`` real/imaginary, ``d`` features, ``k`` bands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from ..errors import require
from ..transforms import STFT
from ..transforms.mel import mel_filterbank
from .base import FastRecipe, SeparationModel
from .blocks import Fusable, RMSNorm, RotaryEmbedding, Transformer

BS_DEFAULT_BANDS = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)


@dataclass
class RoformerConfig:
    """Settings shared by both RoFormers (names as in ``bs-roformer``).

    Attributes:
        sources: output stems (``num_stems`` of the reference).
        audio_channels: 2 (``stereo=True``) or 1.
        dim, depth: feature size and number of (time, frequency) transformer pairs.
        freqs_per_bands: band widths in STFT bins (BS-RoFormer; must sum to ``n_fft // 2 + 1``).
        num_bands: mel bands (Mel-RoFormer).
        mask_estimator_depth: layers of each band's mask MLP.
    """

    sources: tuple[str, ...] = ("vocals",)
    sample_rate: int = 44100
    audio_channels: int = 2
    dim: int = 384
    depth: int = 6
    time_transformer_depth: int = 1
    freq_transformer_depth: int = 1
    dim_head: int = 64
    heads: int = 8
    attn_dropout: float = 0.0
    ff_dropout: float = 0.0
    n_fft: int = 2048
    hop_length: int = 441
    win_length: int = 2048
    mask_estimator_depth: int = 2
    freqs_per_bands: tuple[int, ...] = BS_DEFAULT_BANDS
    num_bands: int = 60
    default_segment: float = 8.0


def _mlp(dim_in: int, dim_out: int, dim_hidden: int, hidden_layers: int) -> nn.Sequential:
    dims = (dim_in, *((dim_hidden,) * hidden_layers), dim_out)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class BandSplit(nn.Module):
    """One RMSNorm + Linear per band: ``[b, t, sum(widths)] -> [b, t, k, d]``."""

    def __init__(self, dim: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.widths = widths
        self.to_features = nn.ModuleList(nn.Sequential(RMSNorm(w), nn.Linear(w, dim)) for w in widths)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([f(part) for part, f in zip(x.split(self.widths, dim=-1), self.to_features)], dim=-2)


class MaskEstimator(nn.Module):
    """One MLP + GLU per band: ``[b, t, k, d] -> [b, t, sum(widths)]``."""

    to_freqs: nn.ModuleList

    def __init__(self, dim: int, widths: tuple[int, ...], hidden_layers: int, expansion: int = 4) -> None:
        super().__init__()
        self.to_freqs = nn.ModuleList(
            nn.Sequential(_mlp(dim, w * 2, dim * expansion, hidden_layers), nn.GLU(dim=-1)) for w in widths
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([f(band) for band, f in zip(x.unbind(dim=-2), self.to_freqs)], dim=-1)


class _AxialRoformer(SeparationModel, Fusable):
    """What both RoFormers share: STFT, band features, axial transformers, complex masks, iSTFT.

    Shape:
        ``forward``: ``[B, C, T]`` -> ``[B, S, C, T]``.
    """

    # int8 Linear layers: the transformers' and mask MLPs' matmuls are most of the time (benchmarks/fast_mode.py)
    fast_recipe = FastRecipe(int8_linear=True, overlap=0.1)
    norm_each_transformer = False  # Mel-RoFormer ends every transformer with a norm, BS-RoFormer once at the end
    mask_hidden_offset = -1  # hidden layers of the mask MLPs: depth - 1 (BS) or depth (Mel)

    def __init__(self, config: RoformerConfig, widths: tuple[int, ...]) -> None:
        super().__init__()
        cfg = config
        require(cfg.audio_channels in (1, 2), "audio_channels must be 1 or 2")
        require(cfg.win_length == cfg.n_fft, "win_length must equal n_fft")
        self._adopt(cfg, cfg.hop_length)
        self.default_segment = cfg.default_segment
        self.stft = STFT(cfg.n_fft, cfg.hop_length, pad_mode="reflect")
        time_rotary, freq_rotary = RotaryEmbedding(cfg.dim_head), RotaryEmbedding(cfg.dim_head)
        common: dict[str, Any] = dict(
            dim=cfg.dim,
            heads=cfg.heads,
            dim_head=cfg.dim_head,
            attn_dropout=cfg.attn_dropout,
            ff_dropout=cfg.ff_dropout,
            norm_output=self.norm_each_transformer,
        )
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    Transformer(depth=cfg.time_transformer_depth, rotary_embed=time_rotary, **common),
                    Transformer(depth=cfg.freq_transformer_depth, rotary_embed=freq_rotary, **common),
                ]
            )
            for _ in range(cfg.depth)
        )
        if not self.norm_each_transformer:
            self.final_norm = RMSNorm(cfg.dim)
        widths_c = tuple(2 * w * cfg.audio_channels for w in widths)
        self.band_split = BandSplit(cfg.dim, widths_c)
        hidden = cfg.mask_estimator_depth + self.mask_hidden_offset
        self.mask_estimators = nn.ModuleList(MaskEstimator(cfg.dim, widths_c, hidden) for _ in self.sources)

    attention_budget = 64 * 2**20  # bytes of attention and feed-forward activations held at once at inference

    def streamed_modules(self) -> list[str]:
        """The per-band mask MLPs: most of the weights, each run once per chunk (see :mod:`demixer.models.mapped`)."""
        return [
            f"mask_estimators.{i}.to_freqs.{k}"
            for i, est in enumerate(self.mask_estimators)
            for k in range(len(cast(MaskEstimator, est).to_freqs))
        ]

    def _sequences(self, transformer: nn.Module, x: Tensor) -> Tensor:
        """Run a transformer over every sequence of ``x [b, a, n, d]`` (any strides).

        Groups of sequences small enough that attention and feed-forward activations stay within
        :attr:`attention_budget` (one group in training, where autograd keeps them all anyway).
        """
        if self.fused:
            return self._sequences_in_place(transformer, x)
        flat = x.reshape(-1, *x.shape[-2:])
        group = flat.shape[0] if self.training else self._group(x)
        if group >= flat.shape[0]:
            return transformer(flat).reshape(x.shape)
        return torch.cat([transformer(part) for part in flat.split(group)]).reshape(x.shape)

    def _sequences_in_place(self, transformer: nn.Module, x: Tensor) -> Tensor:
        """:meth:`_sequences` writing each group's result back into ``x``'s own storage, so no second copy
        of the activations is made (memory: the chunk's activations plus the budget)."""
        self.check_fused_inference()
        group = self._group(x)
        for b in range(x.shape[0]):
            for start in range(0, x.shape[1], group):
                part = x[b, start : start + group]
                part.copy_(transformer(part.contiguous()))
        return x

    def _group(self, x: Tensor) -> int:
        """Sequences of ``x [b, a, n, d]`` per transformer call within :attr:`attention_budget`."""
        n = x.shape[-2]
        # attention weights plus the feed-forward activations (4 x dim wide, a few copies) per sequence
        per_sequence = (self.config.heads * n * n + 12 * self.config.dim * n) * x.element_size()
        return max(1, self.attention_budget // per_sequence)

    def _gather(self, spec: Tensor) -> Tensor:
        """The bins the bands read, in band order: ``[b, (f s), t, c] -> [b, F', t, c]``."""
        return spec

    def _apply_masks(self, spec: Tensor, masks: Tensor) -> Tensor:
        """Complex masks onto the mixture.

        Shape: ``spec [b, 1, (f s), t]``, ``masks [b, n, F', t]`` -> ``[b, n, (f s), t]``.
        """
        return spec * masks

    def forward(self, mix: Tensor) -> Tensor:
        b, s, length = mix.shape
        spec = torch.view_as_real(self.stft(mix))  # [b, s, f, t, c]
        spec = rearrange(spec, "b s f t c -> b (f s) t c")
        x = rearrange(self._gather(spec), "b f t c -> b t (f c)")
        x = self.band_split(x)  # [b, t, k, d]
        for pair in self.layers:
            time_transformer, freq_transformer = cast(nn.ModuleList, pair)
            x = rearrange(x, "b t k d -> b k t d")
            x = self._sequences(time_transformer, x)
            x = rearrange(x, "b k t d -> b t k d")
            x = self._sequences(freq_transformer, x)
        if not self.norm_each_transformer:
            x = self.final_norm(x)
        masks = torch.stack([estimate(x) for estimate in self.mask_estimators], dim=1)  # [b, n, t, (F' c)]
        masks = torch.view_as_complex(rearrange(masks, "b n t (f c) -> b n f t c", c=2).contiguous())
        spec = torch.view_as_complex(spec.contiguous())[:, None]  # [b, 1, (f s), t]
        est = self._apply_masks(spec, masks.to(spec.dtype))
        est = rearrange(est, "b n (f s) t -> b n s f t", s=s)
        return self.stft.inverse(est, length)


class BSRoformer(_AxialRoformer):
    """Band-split RoFormer: fixed bands of ``freqs_per_bands`` bins.

    Examples:
        >>> cfg = RoformerConfig(dim=16, depth=1, dim_head=8, heads=2, n_fft=512, hop_length=128, win_length=512,
        ...                      freqs_per_bands=(128, 129))
        >>> BSRoformer(cfg).eval()(torch.randn(1, 2, 4096)).shape
        torch.Size([1, 1, 2, 4096])
    """

    def __init__(self, config: RoformerConfig | None = None) -> None:
        cfg = config or RoformerConfig()
        bins = cfg.n_fft // 2 + 1
        require(len(cfg.freqs_per_bands) > 1, "at least two bands")
        require(
            sum(cfg.freqs_per_bands) == bins,
            f"freqs_per_bands must sum to {bins} (n_fft // 2 + 1), got {sum(cfg.freqs_per_bands)}",
        )
        super().__init__(cfg, tuple(cfg.freqs_per_bands))


def mel_band_membership(sample_rate: int, n_fft: int, num_bands: int) -> np.ndarray:
    """Which STFT bins each mel band covers: the non-zero pattern of a Slaney-style mel filter
    bank (librosa's ``filters.mel`` defaults), with the first and last bins forced into the first
    and last bands. Shape: ``[num_bands, n_fft // 2 + 1]`` bool."""

    member = mel_filterbank(sample_rate, n_fft, num_bands) > 0
    member[0, 0] = True
    member[-1, -1] = True
    return member


class MelRoformer(_AxialRoformer):
    """Mel-band RoFormer: overlapping bands on the mel scale; bins shared by two bands get the
    average of their masks."""

    norm_each_transformer = True
    mask_hidden_offset = 0
    freq_indices: Tensor  # buffers: the bins the bands read, in band order, and how many bands share each bin
    num_bands_per_freq: Tensor

    def __init__(self, config: RoformerConfig | None = None) -> None:
        cfg = config or RoformerConfig(mask_estimator_depth=1)
        member = torch.from_numpy(mel_band_membership(cfg.sample_rate, cfg.n_fft, cfg.num_bands))
        require(bool(member.any(dim=0).all()), "every STFT bin must belong to a band")
        bins = member.shape[1]
        indices = torch.arange(bins).expand(cfg.num_bands, bins)[member]  # bins of band 0, then band 1, ...
        if cfg.audio_channels == 2:
            indices = (indices[:, None] * 2 + torch.arange(2)).reshape(-1)  # (f s) order
        super().__init__(cfg, tuple(member.sum(dim=1).tolist()))
        self.register_buffer("freq_indices", indices, persistent=False)
        self.register_buffer("num_bands_per_freq", member.sum(dim=0), persistent=False)

    def _gather(self, spec: Tensor) -> Tensor:
        return spec[:, self.freq_indices]

    def _apply_masks(self, spec: Tensor, masks: Tensor) -> Tensor:
        b, n, _, t = masks.shape
        summed = torch.zeros(b, n, spec.shape[2], t, dtype=masks.dtype, device=masks.device)
        summed.index_add_(2, self.freq_indices, masks)
        channels = self.config.audio_channels
        denom = self.num_bands_per_freq.repeat_interleave(channels).clamp(min=1).to(masks.real.dtype)
        return spec * (summed / denom[:, None])
