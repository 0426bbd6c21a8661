"""Open-Unmix (Stöter, Uhlich, Liutkus & Mitsufuji 2019): one BiLSTM magnitude estimator per target.

Each target network maps the mixture's magnitude spectrogram (bins up to ``max_bin``) through
Linear+BatchNorm+tanh, a 3-layer BiLSTM with a skip connection, and two Linear+BatchNorm layers to
a non-negative mask on all bins, multiplied by the mixture's magnitude. A multichannel Wiener
filter (EM, :data:`~demixer.transforms.wiener.OPEN_UNMIX` conventions) turns the magnitudes into
complex spectrograms. Module names inside ``targets.<name>`` follow ``openunmix.model.OpenUnmix``, so
the published ``umxhq``/``umxl``/``umxse`` state dicts load unchanged.

In eval mode the Wiener post-filter runs (``wiener_iterations``); in train mode the output is the
magnitudes with the mixture's phase. Fused for inference (``fuse_for_inference()``), the whole track
still goes through the LSTMs (as the reference does: the model's output at a frame depends on every
other frame), but only a window of ``wiener_window`` frames of target spectrograms, Wiener estimates
and inverse STFT exists at a time, and BatchNorm is folded into the linear layers, so memory is a
fraction of the reference's.

einops axes: ``b`` batch, ``c`` audio channel, ``j`` targets, ``f`` frequency, ``n`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..errors import require
from ..transforms import STFT
from ..transforms.wiener import OPEN_UNMIX, wiener
from .base import SeparationModel
from .blocks.fusion import Fusable


@dataclass
class OpenUnmixConfig:
    """Constructor settings (names as in ``openunmix``).

    Attributes:
        sources: the targets, one network each.
        sample_rate, audio_channels: the audio the model works on.
        n_fft, hop_length: STFT (periodic Hann window, centred with reflection).
        hidden_size, nb_layers, unidirectional: the LSTM (``hidden_size // 2`` per direction when bidirectional).
        max_bin: bins the networks read (umxhq: 1487, i.e. up to 16 kHz).
        wiener_iterations: EM iterations of the post-filter (0: the magnitudes with the mixture's phase).
        wiener_window: frames per Wiener window (each with its own spatial covariances).
        softmask: initialise the EM with ratio masks instead of magnitudes.
        default_segment: seconds per engine chunk; tracks up to this long are separated whole, like the reference.
    """

    sources: tuple[str, ...] = ("vocals", "drums", "bass", "other")
    sample_rate: int = 44100
    audio_channels: int = 2
    n_fft: int = 4096
    hop_length: int = 1024
    hidden_size: int = 512
    nb_layers: int = 3
    unidirectional: bool = False
    max_bin: int = 1487
    wiener_iterations: int = 1
    wiener_window: int = 300
    softmask: bool = False
    default_segment: float = 600.0


class UnmixNet(nn.Module):
    """One target's magnitude estimator (``openunmix.model.OpenUnmix`` without its STFT).

    Shape:
        ``forward``: magnitudes ``[B, C, F, N]`` -> ``[B, C, F, N]``.
    """

    def __init__(
        self, bins: int, channels: int, hidden: int, layers: int, max_bin: int, unidirectional: bool = False
    ) -> None:
        super().__init__()
        self.nb_output_bins, self.nb_bins, self.hidden_size = bins, max_bin, hidden
        self.fc1 = nn.Linear(max_bin * channels, hidden, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.lstm = nn.LSTM(
            hidden,
            hidden if unidirectional else hidden // 2,
            num_layers=layers,
            bidirectional=not unidirectional,
            batch_first=False,
            dropout=0.4 if layers > 1 else 0.0,
        )
        self.fc2 = nn.Linear(hidden * 2, hidden, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.fc3 = nn.Linear(hidden, bins * channels, bias=False)
        self.bn3 = nn.BatchNorm1d(bins * channels)
        self.input_mean = nn.Parameter(torch.zeros(max_bin))
        self.input_scale = nn.Parameter(torch.ones(max_bin))
        self.output_scale = nn.Parameter(torch.ones(bins))
        self.output_mean = nn.Parameter(torch.ones(bins))

    def encode(self, mag: Tensor) -> Tensor:
        """The first stage and the LSTM: ``[B, C, F, N]`` -> ``[N, B, 2 * hidden]`` (input of ``fc2``)."""
        b, c, _, n = mag.shape
        x = rearrange(mag[:, :, : self.nb_bins], "b c f n -> n b c f")
        x = (x + self.input_mean) * self.input_scale
        x = torch.tanh(self.bn1(self.fc1(x.reshape(n * b, c * self.nb_bins)))).reshape(n, b, self.hidden_size)
        return torch.cat([x, self.lstm(x)[0]], dim=-1)

    def _affine(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """bn2, and bn3 with the output scale/mean, as per-feature scale and shift (eval mode: BatchNorm is affine)."""

        def affine(bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
            mean, var = cast(Tensor, bn.running_mean), cast(Tensor, bn.running_var)  # tracked: running statistics
            scale = bn.weight / torch.sqrt(var + bn.eps)
            return scale, bn.bias - mean * scale

        s2, t2 = affine(self.bn2)
        s3, t3 = affine(self.bn3)
        channels = self.fc3.out_features // self.nb_output_bins
        out_s, out_m = self.output_scale.repeat(channels), self.output_mean.repeat(channels)
        return s2, t2, s3 * out_s, t3 * out_s + out_m

    def decode(self, h: Tensor, mag: Tensor) -> Tensor:
        """The last stages for some frames: ``h [n, B, 2H]``, ``mag [B, C, F, n]`` -> ``[B, C, F, n]``."""
        n, b, _ = h.shape
        c = mag.shape[1]
        x = F.relu(self.bn2(self.fc2(h.reshape(n * b, -1))))
        x = self.bn3(self.fc3(x)).reshape(n, b, c, self.nb_output_bins) * self.output_scale + self.output_mean
        return F.relu(rearrange(x, "n b c f -> b c f n")) * mag

    def decode_fused(self, h: Tensor, mag: Tensor) -> Tensor:
        """:meth:`decode` with the BatchNorms and output scaling as per-feature affines applied in place
        (eval mode only): no second copy of the activations or weights."""
        n, b, _ = h.shape
        c = mag.shape[1]
        s2, t2, s3, t3 = self._affine()
        x = self.fc2(h.reshape(n * b, -1)).mul_(s2).add_(t2).relu_()
        x = self.fc3(x).mul_(s3).add_(t3).relu_().reshape(n, b, c, self.nb_output_bins)
        return rearrange(x, "n b c f -> b c f n") * mag

    def forward(self, mag: Tensor) -> Tensor:
        return self.decode(self.encode(mag), mag)


class OpenUnmix(SeparationModel, Fusable):
    """Open-Unmix separator: the target networks, the Wiener post-filter, STFT and inverse.

    Shape:
        ``forward``: ``[B, C, T]`` -> ``[B, S, C, T]``.

    Examples:
        >>> cfg = OpenUnmixConfig(sources=("vocals", "other"), n_fft=512, hop_length=128, hidden_size=16, max_bin=128)
        >>> OpenUnmix(cfg).eval()(torch.randn(1, 2, 8000)).shape
        torch.Size([1, 2, 2, 8000])
    """

    def __init__(self, config: OpenUnmixConfig | None = None) -> None:
        super().__init__()
        cfg = config or OpenUnmixConfig()
        bins = cfg.n_fft // 2 + 1
        require(0 < cfg.max_bin <= bins, f"max_bin must be in (0, {bins}], got {cfg.max_bin}")
        require(cfg.audio_channels in (1, 2), "audio_channels must be 1 or 2 (the Wiener filter's closed form)")
        self._adopt(cfg, cfg.hop_length)
        self.default_segment = cfg.default_segment
        self.stft = STFT(cfg.n_fft, cfg.hop_length, pad_mode="reflect")
        self.targets = nn.ModuleDict(
            {
                name: UnmixNet(
                    bins, cfg.audio_channels, cfg.hidden_size, cfg.nb_layers, cfg.max_bin, cfg.unidirectional
                )
                for name in cfg.sources
            }
        )

    @property
    def nets(self) -> list[UnmixNet]:
        """The target networks, in source order."""
        return [cast(UnmixNet, net) for net in self.targets.values()]

    def forward(self, mix: Tensor) -> Tensor:
        if self.fused:
            return self.forward_fused(mix)
        spec = self.stft(mix)  # [b, c, f, n] complex
        mags = torch.stack([net(spec.abs()) for net in self.nets], dim=1)  # [b, j, c, f, n]
        if self.training:  # the training objective: magnitudes with the mixture's phase, no post-filter
            return self.stft.inverse(mags * torch.exp(1j * torch.angle(spec))[:, None], mix.shape[-1])
        return self.stft.inverse(self.post_filter(mags, spec), mix.shape[-1])

    def post_filter(self, mags: Tensor, spec: Tensor) -> Tensor:
        """The Wiener post-filter (``wiener_iterations`` EM steps), ``wiener_window`` frames at a time.

        Shape: ``mags [b, j, c, f, n]``, complex ``spec [b, c, f, n]`` -> complex ``[b, j, c, f, n]``.
        """
        cfg = self.config
        windows = []
        for first in range(0, spec.shape[-1], cfg.wiener_window):
            n = min(cfg.wiener_window, spec.shape[-1] - first)
            windows.append(
                torch.stack(
                    [
                        self._wiener_window(mags[b, ..., first : first + n], spec[b, ..., first : first + n])
                        for b in range(spec.shape[0])
                    ]
                )
            )
        return torch.cat(windows, dim=-1)

    def _wiener_window(self, mags: Tensor, spec: Tensor) -> Tensor:
        """One item's window: ``mags [j, c, f, n]``, ``spec [c, f, n]`` -> ``[j, c, f, n]``."""
        cfg = self.config
        y = wiener(
            rearrange(mags, "j c f n -> f n c j"),
            rearrange(spec, "c f n -> f n c"),
            iterations=cfg.wiener_iterations,
            softmask=cfg.softmask,
            window_frames=spec.shape[-1],
            convention=OPEN_UNMIX,
        )
        return rearrange(y, "f n c j -> j c f n")

    def forward_fused(self, mix: Tensor) -> Tensor:
        """:meth:`forward` at inference with bounded memory: the LSTMs see every frame (of the bins they
        read); the decoders, the post-filter and the inverse STFT run one Wiener window at a time."""
        self.check_fused_inference()
        cfg = self.config
        length = mix.shape[-1]
        padded = self.stft.pad(mix)
        frames = self.stft.frames(length)
        low = torch.cat(
            [
                self.stft.frames_at(padded, a, min(512, frames - a))[:, :, : cfg.max_bin].abs()
                for a in range(0, frames, 512)
            ],
            dim=-1,
        )  # [b, c, max_bin, n]
        hidden = [net.encode(low) for net in self.nets]  # [n, b, 2H] each: small
        del low
        synth = self.stft.synthesis(mix.new_empty(mix.shape[0], len(self.sources), mix.shape[1], 0), length)
        for first in range(0, frames, cfg.wiener_window):
            n = min(cfg.wiener_window, frames - first)
            spec = self.stft.frames_at(padded, first, n)  # [b, c, f, n]
            mag = spec.abs()
            mags = torch.stack(
                [net.decode_fused(h[first : first + n], mag) for net, h in zip(self.nets, hidden)], dim=1
            )
            for b in range(spec.shape[0]):
                synth.add(self._wiener_window(mags[b], spec[b]), first, item=b)
        return synth.finish()
