"""A tiny spectrogram mask network, for smoke tests, benchmarks of the engine and demos of training.

It is a real (if small) mask model: STFT magnitude -> a few 2-D convolutions -> one
sigmoid mask per source -> iSTFT. Its receptive field is a handful of frames, far inside
one chunk's overlap margin, which makes it the reference model of the chunking tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from ..errors import require
from ..transforms import STFT
from .base import SeparationModel


@dataclass
class TinyMaskConfig:
    sources: tuple[str, ...] = ("vocals", "accompaniment")
    sample_rate: int = 44100
    audio_channels: int = 2
    n_fft: int = 1024
    hop_length: int = 256
    hidden: int = 8
    layers: int = 2
    kernel: int = 3


class TinyMaskModel(SeparationModel):
    """Small convolutional ratio-mask model.

    Shape:
        ``forward``: ``[B, C, T]`` -> ``[B, S, C, T]``.
    """

    def __init__(self, config: TinyMaskConfig | None = None) -> None:
        super().__init__()
        cfg = config or TinyMaskConfig()
        require(cfg.layers >= 1 and cfg.kernel % 2 == 1, "need >= 1 layer and an odd kernel")
        self._adopt(cfg, cfg.hop_length)
        self.stft = STFT(cfg.n_fft, cfg.hop_length)
        c_in, blocks = cfg.audio_channels, []
        for _ in range(cfg.layers):
            blocks += [nn.Conv2d(c_in, cfg.hidden, cfg.kernel, padding=cfg.kernel // 2), nn.GELU()]
            c_in = cfg.hidden
        blocks.append(nn.Conv2d(c_in, len(cfg.sources) * cfg.audio_channels, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, mix: Tensor) -> Tensor:
        # b batch, c audio channel, n stems, f freq, t frames
        spec = self.stft(mix)  # [b, c, f, t]
        feats = torch.log1p(spec.abs())
        masks = torch.sigmoid(self.net(feats))
        masks = rearrange(masks, "b (n c) f t -> b n c f t", n=len(self.sources))
        return self.stft.inverse(spec[:, None] * masks, mix.shape[-1])
