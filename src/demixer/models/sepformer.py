"""SepFormer (Subakan et al. 2021): a learned encoder, a dual-path transformer that predicts one mask per
speaker, and a learned decoder; checkpoint-compatible with SpeechBrain's published models.

The mask network splits the encoder's frames into chunks of ``chunk`` frames that overlap by half. Each
dual-path block runs a transformer within every chunk (intra) and one across the chunks at each position
(inter), so a frame sees the whole input: chunked separation is not exact, and the engine's overlap is set
from a measured seam error (see :attr:`SepFormer.default_overlap`).

SpeechBrain stores the model as three state dicts (``encoder.ckpt``, ``masknet.ckpt``, ``decoder.ckpt``);
:func:`demixer.models.speechbrain.state_dict` renames their keys to this module's. The transformer layers are torch's
``nn.TransformerEncoderLayer`` (pre-norm, ReLU), which computes what SpeechBrain's ``TransformerEncoderLayer``
does with ``normalize_before: true`` and uses torch's fused inference kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import require
from .base import SeparationModel, are_speakers
from .convtasnet import mixture_gains


@dataclass
class SepFormerConfig:
    """Settings of :class:`SepFormer` (SpeechBrain's hyperparameter names in brackets).

    Attributes:
        sources: one name per output (``speaker1``, ``speaker2``, ...; ``speech`` for enhancement).
        filters: encoder basis size (``N_encoder_out``); the dual-path width equals it (``out_channels``).
        kernel: encoder and decoder kernel in samples (``kernel_size``); stride ``kernel // 2``.
        chunk: frames per dual-path chunk (``K``).
        blocks: dual-path blocks (``num_layers`` of ``Dual_Path_Model``).
        layers: transformer layers in each intra and inter stack (``num_layers`` of ``SBTransformerBlock``).
        heads, ffn: attention heads and feed-forward width (``nhead``, ``d_ffn``).
        max_chunks: the positional table's length (SpeechBrain's 2500): the most chunks one forward can take.
        mixture_gain: scale the outputs so their sum comes closest to the mixture (the network was trained
            with a scale-invariant loss, so its output level is arbitrary); off for parity with the reference.
    """

    sources: tuple[str, ...] = ("speaker1", "speaker2")
    sample_rate: int = 8000
    audio_channels: int = 1
    filters: int = 256
    kernel: int = 16
    chunk: int = 250
    blocks: int = 2
    layers: int = 8
    heads: int = 8
    ffn: int = 1024
    max_chunks: int = 2500
    mixture_gain: bool = True


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """The transformer's sin/cos position table ``[length, dim]`` (sin on even channels, cos on odd)."""
    positions = torch.arange(length, dtype=torch.float32)[:, None]
    rates = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(positions * rates)
    table[:, 1::2] = torch.cos(positions * rates)
    return table


class TransformerStack(nn.Module):
    """Positions added, then pre-norm transformer layers and a final layer norm. ``[N, L, D]`` -> ``[N, L, D]``."""

    def __init__(self, cfg: SepFormerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                cfg.filters, cfg.heads, cfg.ffn, dropout=0.0, layer_norm_eps=1e-6, batch_first=True, norm_first=True
            )
            for _ in range(cfg.layers)
        )
        self.norm = nn.LayerNorm(cfg.filters, eps=1e-6)
        self.positions: Tensor
        self.register_buffer("positions", sinusoidal_positions(cfg.max_chunks, cfg.filters), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        limit = self.positions.shape[0]
        require(x.shape[1] <= limit, f"at most {limit} positions per sequence")
        x = x + self.positions[: x.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class DualPathBlock(nn.Module):
    """Intra-chunk then inter-chunk transformers, each normalised and added back. ``[B, D, K, S]``."""

    def __init__(self, cfg: SepFormerConfig) -> None:
        super().__init__()
        self.intra = TransformerStack(cfg)
        self.intra_norm = nn.GroupNorm(1, cfg.filters, eps=1e-8)
        self.inter = TransformerStack(cfg)
        self.inter_norm = nn.GroupNorm(1, cfg.filters, eps=1e-8)

    def forward(self, x: Tensor) -> Tensor:
        b, d, k, s = x.shape
        within = self.intra(x.permute(0, 3, 2, 1).reshape(b * s, k, d))  # each chunk's frames
        x = x + self.intra_norm(within.reshape(b, s, k, d).permute(0, 3, 2, 1))
        across = self.inter(x.permute(0, 2, 3, 1).reshape(b * k, s, d))  # each position across the chunks
        return x + self.inter_norm(across.reshape(b, k, s, d).permute(0, 3, 1, 2))


class SepFormer(SeparationModel):
    """Masked learned-encoder speaker separation (or enhancement, with one output) by dual-path transformers.

    Shape:
        ``forward``: ``[B, 1, T]`` -> ``[B, S, 1, T]``.
    """

    def __init__(self, config: SepFormerConfig | None = None) -> None:
        super().__init__()
        cfg = config or SepFormerConfig()
        require(cfg.audio_channels == 1, "SepFormer is single-channel (the engine downmixes)")
        require(cfg.kernel % 2 == 0 and cfg.chunk % 2 == 0, "kernel and chunk must be even")
        self.stride = cfg.kernel // 2
        self._adopt(cfg, self.stride)
        # a frame attends to the whole chunk, so chunks only approximate whole-file output; 10 s chunks with
        # 20 % overlap measured a seam error well below the model's own error (tests/test_sepformer.py)
        self.default_segment = 10.0
        self.default_overlap = 0.2
        self.elastic_segment = True
        self.unordered_sources = are_speakers(self.sources)
        self.band_extension = self.unordered_sources  # 8 kHz speakers on wide-band input keep the band above
        n = cfg.filters
        self.encoder = nn.Conv1d(1, n, cfg.kernel, stride=self.stride, bias=False)
        self.norm = nn.GroupNorm(1, n, eps=1e-8)
        self.bottleneck = nn.Conv1d(n, n, 1, bias=False)
        self.blocks = nn.ModuleList(DualPathBlock(cfg) for _ in range(cfg.blocks))
        self.prelu = nn.PReLU()
        self.to_speakers = nn.Conv2d(n, n * len(self.sources), 1)
        self.output = nn.Conv1d(n, n, 1)
        self.output_gate = nn.Conv1d(n, n, 1)
        self.to_mask = nn.Conv1d(n, n, 1, bias=False)
        self.decoder = nn.ConvTranspose1d(n, 1, cfg.kernel, stride=self.stride, bias=False)

    def forward(self, mix: Tensor) -> Tensor:
        b, _, length = mix.shape
        speakers = len(self.sources)
        w = F.relu(self.encoder(mix))  # [B, N, L]
        frames = w.shape[-1]
        chunks, padded = self._chunks(self.bottleneck(self.norm(w)))  # [B, N, K, S]
        for block in self.blocks:
            chunks = block(chunks)
        per_speaker = self.to_speakers(self.prelu(chunks))  # [B, N * speakers, K, S]
        per_speaker = per_speaker.reshape(b * speakers, -1, *per_speaker.shape[-2:])
        h = self._overlap_add(per_speaker, padded)[..., :frames]  # [B * speakers, N, L]
        masks = F.relu(self.to_mask(torch.tanh(self.output(h)) * torch.sigmoid(self.output_gate(h))))
        est = self.decoder((masks.reshape(b, speakers, -1, frames) * w[:, None]).flatten(0, 1))  # [B * S, 1, T']
        est = F.pad(est, (0, max(0, length - est.shape[-1])))[..., :length].reshape(b, speakers, 1, length)
        if self.config.mixture_gain and not self.training:
            est = est * mixture_gains(est[:, :, 0], mix[:, 0])[..., None, None]
        return est

    def _chunks(self, x: Tensor) -> tuple[Tensor, int]:
        """``[B, N, L]`` -> ``[B, N, K, S]``: chunks of K frames every K/2, after K/2 zeros each side and
        enough at the end for whole chunks; also the padded length."""
        k, hop = self.config.chunk, self.config.chunk // 2
        tail = k - (hop + x.shape[-1] % k) % k
        x = F.pad(x, (hop, hop + tail))
        return x.unfold(-1, k, hop).transpose(2, 3), x.shape[-1]

    def _overlap_add(self, x: Tensor, padded: int) -> Tensor:
        """The chunks ``[B, N, K, S]`` summed back in place -> ``[B, N, L]`` (the leading K/2 zeros removed)."""
        b, n, k, s = x.shape
        hop = k // 2
        folded = F.fold(x.reshape(b, n * k, s), output_size=(1, padded), kernel_size=(1, k), stride=(1, hop))
        return folded.reshape(b, n, padded)[..., hop:]
