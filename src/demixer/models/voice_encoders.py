"""Speaker embeddings of an enrolment clip, for the target-speaker extractors (:mod:`.extraction`).

Two encoders:

- :class:`ConvVoiceEncoder`: log-mel frames -> a 1-D conv stack -> mean and standard-deviation pooling ->
  a unit-length embedding, trained jointly with its extractor (``speaker_extractor``).
- :class:`GE2EVoiceEncoder`: the published GE2E d-vector network (Wan et al. 2018) as Resemblyzer ships it
  (Apache-2.0), used frozen by ``speaker_denoiser``: 40 mel power bands of 25 ms windows every 10 ms at
  16 kHz -> a 3-layer LSTM -> linear -> ReLU -> unit length, on 1.6 s partials 77 frames apart whose
  embeddings are averaged. Its weights are converted once by ``scripts/make_extract_init.py``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..transforms import STFT
from ..transforms.mel import mel_filterbank


class ConvVoiceEncoder(nn.Module):
    """Utterance -> unit-length speaker embedding (length independent, zero-padding aware only by content).

    Shape:
        ``forward``: ``[B, 1, T]`` or ``[B, T]`` -> ``[B, speaker_dim]``.
    """

    def __init__(self, sample_rate: int, speaker_dim: int, channels: int, layers: int, n_mels: int) -> None:
        super().__init__()
        n_fft = 1 << (int(round(0.025 * sample_rate)) - 1).bit_length()  # >= 25 ms windows
        self.stft = STFT(n_fft, int(round(0.010 * sample_rate)))
        self.register_buffer(
            "mel", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels, fmin=40.0)), persistent=False
        )
        convs: list[nn.Module] = []
        width = n_mels
        for i in range(layers):
            convs += [
                nn.Conv1d(width, channels, 5, dilation=2**i, padding=2 * 2**i),
                nn.ReLU(),
                nn.GroupNorm(1, channels),
            ]
            width = channels
        self.convs = nn.Sequential(*convs)
        self.project = nn.Linear(2 * channels, speaker_dim)

    def forward(self, wav: Tensor) -> Tensor:
        if wav.dim() == 3:
            wav = wav.mean(1)
        power = self.stft(wav).abs().pow(2)  # [B, F, frames]
        feats = torch.log(torch.einsum("mf,bft->bmt", self.mel, power) + 1e-6)
        feats = feats - feats.mean(dim=-1, keepdim=True)  # per-utterance mean normalisation (channel effects)
        h = self.convs(feats)
        stats = torch.cat([h.mean(-1), h.std(-1)], dim=-1)
        return F.normalize(self.project(stats), dim=-1)


class GE2EVoiceEncoder(nn.Module):
    """The GE2E d-vector encoder, Resemblyzer's layout (``lstm.*``, ``linear.*``), 16 kHz.

    Matches ``resemblyzer.VoiceEncoder.embed_utterance`` on a clip that ``preprocess_wav`` left whole (speech
    throughout): quiet clips are raised to -30 dBFS, louder ones kept; partials of 160 frames every 77 frames,
    the last kept when it holds 75 % of a partial.

    Shape:
        ``forward``: ``[B, 1, T]`` or ``[B, T]`` (one length per batch) -> ``[B, 256]``.
    """

    window: Tensor
    sample_rate = 16000
    dim = 256  # the published network's embedding size
    partial_frames = 160
    partial_step = 77  # round(16000 / 1.3 / 160): Resemblyzer's default 1.3 partials a second
    target_dbfs = -30.0

    def __init__(self, hidden: int = 256, layers: int = 3, n_mels: int = 40) -> None:
        super().__init__()
        self.n_fft, self.hop = 400, 160
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer(
            "mel", torch.from_numpy(mel_filterbank(self.sample_rate, self.n_fft, n_mels)), persistent=False
        )
        self.lstm = nn.LSTM(n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, self.dim)
        self.requires_grad_(False)  # published weights, used as they are

    def partials(self, samples: int) -> tuple[list[int], int]:
        """Start frames of the partials of a ``samples``-long clip, and the length to zero-pad it to."""
        frames = int(np.ceil((samples + 1) / self.hop))
        starts = list(range(0, max(1, frames - self.partial_frames + self.partial_step + 1), self.partial_step))
        coverage = (samples - starts[-1] * self.hop) / (self.partial_frames * self.hop)
        if coverage < 0.75 and len(starts) > 1:
            starts = starts[:-1]
        return starts, max(samples, (starts[-1] + self.partial_frames) * self.hop)

    def forward(self, wav: Tensor) -> Tensor:
        if wav.dim() == 3:
            wav = wav.mean(1)
        rms_db = 10 * torch.log10(wav.pow(2).mean(-1, keepdim=True) + 1e-20)
        wav = wav * 10 ** ((self.target_dbfs - rms_db).clamp(min=0) / 20)  # raise quiet clips only
        starts, length = self.partials(wav.shape[-1])
        wav = F.pad(wav, (0, length - wav.shape[-1]))
        spec = torch.stft(
            wav, self.n_fft, self.hop, window=self.window, center=True, pad_mode="constant", return_complex=True
        )
        mels = torch.einsum("mf,bft->btm", self.mel, spec.abs().pow(2))  # [B, frames, n_mels], power (not log)
        parts = torch.stack([mels[:, s : s + self.partial_frames] for s in starts], dim=1)  # [B, P, 160, n_mels]
        _, (hidden, _) = self.lstm(parts.flatten(0, 1))
        embeds = F.normalize(F.relu(self.linear(hidden[-1])), dim=-1).unflatten(0, parts.shape[:2])
        return F.normalize(embeds.mean(1), dim=-1)
