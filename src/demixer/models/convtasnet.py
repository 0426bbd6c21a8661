"""Conv-TasNet (Luo & Mesgarani 2019): a learned encoder, a temporal convolutional network that
predicts one mask per speaker, and a learned decoder. Trained with permutation-invariant losses.

How many speakers come out: the model has ``max_speakers`` outputs; trained on mixtures of fewer
speakers with silent extra targets, it leaves the outputs it does not need near silence.
:func:`active_speakers` applies the rule: an output counts as a speaker when its level is within
``threshold_db`` (default 30 dB) of the loudest output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import require
from .base import SeparationModel, are_speakers
from .blocks.fusion import Fusable


@dataclass
class ConvTasNetConfig:
    """Settings of :class:`ConvTasNet` (names as in the paper: N, L, B, H, P, X, R).

    Attributes:
        sources: one name per output (``speaker1``, ``speaker2``, ...).
        filters (N), kernel (L): encoder basis size and length (stride ``kernel // 2``).
        bottleneck (B), hidden (H), conv_kernel (P): TCN block sizes.
        blocks (X), repeats (R): dilations 1..2^(X-1), repeated R times.
        causal: causal convolutions and cumulative layer norm (for streaming).
        speaker_dim: size of a conditioning vector (0: none). When set, ``forward`` takes a
            ``speaker`` embedding that scales and shifts the TCN input at the start of every repeat
            (FiLM, as SpEx+ conditions its TCN stacks); see :mod:`demixer.models.extraction`.
        mixture_gain: at inference, scale each output by the least-squares gains (>= 0) that bring
            the outputs' sum closest to the mixture. A scale-invariant loss (SI-SDR) leaves the level
            of the outputs free; this gives them the mixture's level without changing their SI-SDR.
            Not in causal mode (the gains see the whole chunk).
        mask_activation: ``sigmoid`` (demixer's models) or ``relu`` (some Asteroid models).
        encoder_activation: ``relu`` on the encoder's output (demixer's models) or ``linear`` (Asteroid's default).
        pad_edges: pad one stride of zeros on each side, so the first and last samples get whole frames.
            Asteroid's models run without (the last partial frame is dropped and its output is zero).
    """

    sources: tuple[str, ...] = ("speaker1", "speaker2")
    sample_rate: int = 8000
    audio_channels: int = 1
    filters: int = 256
    kernel: int = 16
    bottleneck: int = 128
    hidden: int = 256
    conv_kernel: int = 3
    blocks: int = 6
    repeats: int = 2
    causal: bool = False
    speaker_dim: int = 0
    mixture_gain: bool = True
    mask_activation: str = "sigmoid"
    encoder_activation: str = "relu"
    pad_edges: bool = True


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"sigmoid": torch.sigmoid, "relu": F.relu, "linear": lambda x: x}


class GlobalLayerNorm(nn.Module):
    """gLN: normalise over channels and time. ``[B, C, T]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(1, 2), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        scale = self.gamma / torch.sqrt(var + 1e-8)  # [B, C, 1]
        return torch.addcmul(self.beta - mean * scale, x, scale)  # one pass over x: x * scale + shift


class _ChannelNorm(nn.Module):
    """cLN: normalise over channels only (causal). ``[B, C, T]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class TCNBlock(Fusable):
    """One TCN block: 1x1 in, PReLU + norm, dilated depthwise conv, PReLU + norm, residual and skip 1x1 convs."""

    def __init__(self, cfg: ConvTasNetConfig, dilation: int) -> None:
        super().__init__()
        norm = _ChannelNorm if cfg.causal else GlobalLayerNorm
        pad = (cfg.conv_kernel - 1) * dilation
        # a symmetric even padding is done by the convolution itself, without a padded copy of its input
        inside = not cfg.causal and pad % 2 == 0
        self.pad = None if inside else (pad, 0) if cfg.causal else (pad // 2, pad - pad // 2)
        self.inp = nn.Conv1d(cfg.bottleneck, cfg.hidden, 1)
        self.act1, self.norm1 = nn.PReLU(), norm(cfg.hidden)
        self.depthwise = nn.Conv1d(
            cfg.hidden,
            cfg.hidden,
            cfg.conv_kernel,
            dilation=dilation,
            groups=cfg.hidden,
            padding=pad // 2 if inside else 0,
        )
        self.act2, self.norm2 = nn.PReLU(), norm(cfg.hidden)
        self.res = nn.Conv1d(cfg.hidden, cfg.bottleneck, 1)
        self.skip = nn.Conv1d(cfg.hidden, cfg.bottleneck, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self.norm1(self.act1(self.inp(x)))
        if self.pad is not None:
            y = F.pad(y, self.pad)
        y = self.norm2(self.act2(self.depthwise(y)))
        if self.fused:
            return self._residual_and_skip_fused(x, y)
        return x + self.res(y), self.skip(y)

    def _residual_and_skip_fused(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The residual and skip 1x1 convolutions as one, the residual added in place."""
        self.check_fused_inference()
        biases = cast(list[Tensor], [self.res.bias, self.skip.bias])  # both 1x1 convolutions have biases
        both = F.conv1d(y, torch.cat([self.res.weight, self.skip.weight]), torch.cat(biases))
        res, skip = both.chunk(2, dim=1)
        return res.add_(x), skip


class ConvTasNet(SeparationModel):
    """Masked learned-encoder speaker separation.

    Shape:
        ``forward``: ``[B, 1, T]`` (and ``speaker [B, speaker_dim]`` when conditioned) -> ``[B, S, 1, T]``.
    """

    def __init__(self, config: ConvTasNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or ConvTasNetConfig()
        require(cfg.audio_channels == 1, "Conv-TasNet here is single-channel (the engine splits multichannel input)")
        require(cfg.kernel % 2 == 0, "kernel must be even (stride = kernel // 2)")
        require(
            cfg.mask_activation in ("sigmoid", "relu") and cfg.encoder_activation in ("relu", "linear"),
            "mask_activation: sigmoid or relu; encoder_activation: relu or linear",
        )
        self.stride = cfg.kernel // 2
        self._adopt(cfg, self.stride)
        # 10 s chunks: the TCN's activations (10k frames x 256 channels) stay near the caches; measured
        # 15-20 % faster per second of audio than 30 s chunks. 1.5 s of overlap is enough: the outer
        # quarter, never used, is 0.375 s, past the convolutions' reach (0.13 s each side at the default
        # sizes), so the engine's 25 % would only recompute more
        self.default_segment = 10.0
        self.default_overlap = 0.15
        self.elastic_segment = True  # fully convolutional, gLN over the chunk: any length works
        self.band_extension = True  # 8 kHz speech on 16-48 kHz input: keep the band above 4 kHz
        self.unordered_sources = are_speakers(self.sources)
        self.encoder = nn.Conv1d(1, cfg.filters, cfg.kernel, stride=self.stride, bias=False)
        self.norm = _ChannelNorm(cfg.filters) if cfg.causal else GlobalLayerNorm(cfg.filters)
        self.bottleneck = nn.Conv1d(cfg.filters, cfg.bottleneck, 1)
        self.tcn = nn.ModuleList(TCNBlock(cfg, 2**x) for _ in range(cfg.repeats) for x in range(cfg.blocks))
        self.blocks_per_repeat = cfg.blocks
        if cfg.speaker_dim:
            self.film = nn.ModuleList(nn.Linear(cfg.speaker_dim, 2 * cfg.bottleneck) for _ in range(cfg.repeats))
        self.mask = nn.Sequential(nn.PReLU(), nn.Conv1d(cfg.bottleneck, len(self.sources) * cfg.filters, 1))
        self.decoder = nn.ConvTranspose1d(cfg.filters, 1, cfg.kernel, stride=self.stride, bias=False)

    def forward(self, mix: Tensor, speaker: Tensor | None = None) -> Tensor:
        b, _, length = mix.shape
        cfg = self.config
        lead = self.stride if cfg.pad_edges else 0
        x = F.pad(mix, (lead, (-length) % self.stride + lead) if cfg.pad_edges else (0, 0))
        w = ACTIVATIONS[cfg.encoder_activation](self.encoder(x))  # [B, N, K]
        y = self.bottleneck(self.norm(w))
        skips = 0
        for i, block in enumerate(self.tcn):
            if speaker is not None and i % self.blocks_per_repeat == 0:
                scale, shift = self.film[i // self.blocks_per_repeat](speaker).unsqueeze(-1).chunk(2, dim=1)
                y = y * (1 + scale) + shift
            y, s = block(y)
            skips = skips + s
        masks = ACTIVATIONS[cfg.mask_activation](self.mask(skips)).reshape(b, len(self.sources), -1, w.shape[-1])
        est = self.decoder((masks * w[:, None]).reshape(b * len(self.sources), -1, w.shape[-1]))
        est = F.pad(est, (0, max(0, lead + length - est.shape[-1])))  # frames that were not whole give zeros
        est = est[..., lead : lead + length].reshape(b, len(self.sources), 1, length)
        if cfg.mixture_gain and not self.training and not cfg.causal:
            est = est * mixture_gains(est[:, :, 0], mix[:, 0])[..., None, None]
        return est


def mixture_gains(est: Tensor, mix: Tensor, eps: float = 1e-8) -> Tensor:
    """Gains minimising ``||mix - sum_s g_s est_s||``, one per output.

    SI-SDR is blind to polarity as well as level, so a gain may be negative: it then undoes an inverted
    output. Where an output's gain would take the opposite sign of its own correlation with the mixture
    (outputs that mostly repeat each other, where least squares cancels one against the other), all
    outputs get one common gain instead, so no output is cancelled. Shape: ``[B, S, T], [B, T] -> [B, S]``.
    """
    e, m = est.double(), mix.double()[..., None]
    gram = e @ e.transpose(1, 2)
    gram = gram + eps * (gram.diagonal(dim1=1, dim2=2).sum(-1, keepdim=True)[..., None] + 1e-12) * torch.eye(
        e.shape[1], dtype=e.dtype, device=e.device
    )
    corr = (e @ m)[..., 0]
    g = torch.linalg.solve(gram, corr[..., None])[..., 0]
    total = e.sum(1, keepdim=True)
    common = ((total @ m)[..., 0] / ((total @ total.transpose(1, 2))[..., 0] + 1e-12)).expand_as(g)
    common = torch.where(common != 0, common, torch.ones_like(common))
    g = torch.where((torch.sign(g) == torch.sign(corr)).all(-1, keepdim=True), g, common)
    return g.to(est.dtype)


def active_speakers(stems: dict[str, np.ndarray] | dict[str, Tensor], threshold_db: float = 30.0) -> list[str]:
    """The outputs that carry a speaker: level within ``threshold_db`` of the loudest output."""
    levels = {
        k: 10 * np.log10(float(np.mean(np.square(np.asarray(v, dtype=np.float64)))) + 1e-12) for k, v in stems.items()
    }
    top = max(levels.values())
    return [k for k, v in levels.items() if v >= top - threshold_db]
