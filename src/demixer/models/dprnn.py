"""DPRNN-TasNet (Luo, Chen & Yoshioka 2020): Conv-TasNet's learned encoder and decoder around a dual-path
recurrent mask network, checkpoint-compatible with Asteroid's ``DPRNNTasNet``.

The bottlenecked frames are cut into chunks of ``chunk`` frames every ``hop`` (``chunk`` zeros padded on both
sides); each block runs a bidirectional LSTM within every chunk and one across the chunks at each position, each
followed by a linear projection, global layer norm and a residual sum. The LSTMs see the whole input, so the engine
chunks with overlap (see :mod:`demixer.separation.chunking`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import require
from .base import SeparationModel, are_speakers
from .convtasnet import ACTIVATIONS, GlobalLayerNorm, mixture_gains


@dataclass
class DPRNNConfig:
    """Settings of :class:`DPRNNTasNet` (Asteroid's names in brackets).

    Attributes:
        sources: one name per output (``speaker1``, ``speaker2``, ...).
        filters, kernel, stride: encoder basis size, length and hop (``n_filters``, ``kernel_size``, ``stride``).
        bottleneck: channels inside the dual-path blocks (``bn_chan``).
        hidden: LSTM size per direction (``hid_size``).
        chunk, hop: frames per chunk and between chunk starts (``chunk_size``, ``hop_size``).
        repeats: dual-path blocks (``n_repeats``).
        bidirectional: whether the inter-chunk LSTM runs both ways (the intra-chunk one always does).
        mask_activation, encoder_activation: as in :class:`~demixer.models.convtasnet.ConvTasNetConfig`.
        mixture_gain: scale the outputs so their sum comes closest to the mixture (off for parity).
    """

    sources: tuple[str, ...] = ("speaker1", "speaker2")
    sample_rate: int = 8000
    audio_channels: int = 1
    filters: int = 64
    kernel: int = 16
    stride: int = 8
    bottleneck: int = 128
    hidden: int = 128
    chunk: int = 100
    hop: int = 50
    repeats: int = 6
    bidirectional: bool = True
    mask_activation: str = "sigmoid"
    encoder_activation: str = "linear"
    mixture_gain: bool = True


class DualPathRNNBlock(nn.Module):
    """Intra-chunk then inter-chunk LSTMs, each projected, normalised and added back. ``[B, N, K, S]``."""

    def __init__(self, cfg: DPRNNConfig) -> None:
        super().__init__()
        n, h = cfg.bottleneck, cfg.hidden
        self.intra_rnn = nn.LSTM(n, h, batch_first=True, bidirectional=True)
        self.intra_linear = nn.Linear(2 * h, n)
        self.intra_norm = GlobalLayerNorm(n)
        self.inter_rnn = nn.LSTM(n, h, batch_first=True, bidirectional=cfg.bidirectional)
        self.inter_linear = nn.Linear(h * (2 if cfg.bidirectional else 1), n)
        self.inter_norm = GlobalLayerNorm(n)

    def forward(self, x: Tensor) -> Tensor:
        b, n, k, s = x.shape
        within = self.intra_linear(self.intra_rnn(x.permute(0, 3, 2, 1).reshape(b * s, k, n))[0])
        x = x + _norm_4d(self.intra_norm, within.reshape(b, s, k, n).permute(0, 3, 2, 1))
        across = self.inter_linear(self.inter_rnn(x.permute(0, 2, 3, 1).reshape(b * k, s, n))[0])
        return x + _norm_4d(self.inter_norm, across.reshape(b, k, s, n).permute(0, 3, 1, 2))


def _norm_4d(norm: GlobalLayerNorm, x: Tensor) -> Tensor:
    """gLN over channels, chunk frames and chunks of ``[B, N, K, S]``."""
    return norm(x.flatten(2)).reshape(x.shape)


class DPRNNTasNet(SeparationModel):
    """Masked learned-encoder speaker separation by dual-path LSTMs.

    Shape:
        ``forward``: ``[B, 1, T]`` -> ``[B, S, 1, T]``.
    """

    def __init__(self, config: DPRNNConfig | None = None) -> None:
        super().__init__()
        cfg = config or DPRNNConfig()
        require(cfg.audio_channels == 1, "DPRNN-TasNet is single-channel (the engine downmixes)")
        require(cfg.mask_activation in ("sigmoid", "relu"), "mask_activation: sigmoid or relu")
        require(cfg.encoder_activation in ("relu", "linear"), "encoder_activation: relu or linear")
        self._adopt(cfg, cfg.stride)
        self.default_segment = 10.0
        self.default_overlap = 0.2
        self.elastic_segment = True
        self.unordered_sources = are_speakers(self.sources)
        self.band_extension = self.unordered_sources  # 8 kHz speakers on wide-band input keep the band above
        n, bn = cfg.filters, cfg.bottleneck
        self.encoder = nn.Conv1d(1, n, cfg.kernel, stride=cfg.stride, bias=False)
        self.norm = GlobalLayerNorm(n)
        self.bottleneck = nn.Conv1d(n, bn, 1)
        self.blocks = nn.ModuleList(DualPathRNNBlock(cfg) for _ in range(cfg.repeats))
        self.prelu = nn.PReLU()
        self.to_speakers = nn.Conv2d(bn, bn * len(self.sources), 1)
        self.output = nn.Conv1d(bn, bn, 1)
        self.output_gate = nn.Conv1d(bn, bn, 1)
        self.to_mask = nn.Conv1d(bn, n, 1, bias=False)
        self.decoder = nn.ConvTranspose1d(n, 1, cfg.kernel, stride=cfg.stride, bias=False)

    def forward(self, mix: Tensor) -> Tensor:
        cfg = self.config
        b, _, length = mix.shape
        speakers = len(self.sources)
        w = ACTIVATIONS[cfg.encoder_activation](self.encoder(mix))  # [B, N, L]
        frames = w.shape[-1]
        y = self.bottleneck(self.norm(w))[..., None]  # [B, bn, L, 1]
        chunks = F.unfold(y, (cfg.chunk, 1), padding=(cfg.chunk, 0), stride=(cfg.hop, 1))  # [B, bn * K, S]
        chunks = chunks.reshape(b, cfg.bottleneck, cfg.chunk, -1)
        for block in self.blocks:
            chunks = block(chunks)
        per_speaker = self.to_speakers(self.prelu(chunks)).reshape(b * speakers, -1, chunks.shape[-1])
        h = F.fold(per_speaker, (frames, 1), (cfg.chunk, 1), padding=(cfg.chunk, 0), stride=(cfg.hop, 1))
        h = h.reshape(b * speakers, cfg.bottleneck, frames)
        masks = ACTIVATIONS[cfg.mask_activation](
            self.to_mask(torch.tanh(self.output(h)) * torch.sigmoid(self.output_gate(h)))
        )
        est = self.decoder((masks.reshape(b, speakers, -1, frames) * w[:, None]).flatten(0, 1))
        est = F.pad(est, (0, max(0, length - est.shape[-1])))[..., :length].reshape(b, speakers, 1, length)
        if cfg.mixture_gain and not self.training:
            est = est * mixture_gains(est[:, :, 0], mix[:, 0])[..., None, None]
        return est
