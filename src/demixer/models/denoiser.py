"""A causal, streaming speech denoiser in the spirit of RNNoise and DeepFilterNet.

Each 10 ms hop, a 20 ms frame is analysed; log energies in ERB-spaced bands feed a small GRU
that predicts one gain per band (interpolated to the bins) and, for the lowest bins where the
harmonics of speech live, one fine gain per bin. The gains scale the noisy spectrum, which is
resynthesised by overlap-add. Nothing looks ahead, so the algorithmic latency is the window
minus one hop (10 ms) at any sample rate.

The same weights run offline (:meth:`forward`, whole signals, as the separation engine wants)
and frame by frame (:class:`StreamingDenoiser`, ``process(block) -> block``) with equal output.

They also run natively at any higher input rate (:meth:`Denoiser.at_input_rate`, e.g. a 16 kHz
model on 48 kHz audio): frames stay 20 ms, so the bins keep their 50 Hz spacing and the features
are computed on the bins the model knows; the bins above its Nyquist frequency take the gain of its
top band. The output keeps the input's full band instead of losing everything above 8 kHz to a
round trip through 16 kHz.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from torch import Tensor, nn

from ..errors import require
from .base import SeparationModel


@dataclass
class DenoiserConfig:
    """Settings of :class:`Denoiser`.

    Attributes:
        sample_rate: 16000 or 48000 (any rate works; frames are 20 ms, hops 10 ms).
        bands: ERB-spaced bands of the band gains.
        fine_bins: lowest bins that also get a gain of their own.
        hidden: GRU width; layers: GRU layers.
        min_gain_db: floor of the gains (limits musical noise); ``--atten-lim`` can raise it further.
        analysis_ms: a longer window for the GRU's features only (0: the frame), reaching further into the past:
            the gains still apply to the ``frame_ms`` frame, so the latency does not change, while the features
            resolve the harmonics of low voices (50 Hz bins at 20 ms cannot). Runs at the trained rate only.
        speaker_dim: when above 0, a speaker embedding of this size scales and shifts the GRU's input and
            output features (FiLM; :class:`~demixer.models.extraction.SpeakerDenoiser`).
    """

    sources: tuple[str, ...] = ("speech", "noise")
    sample_rate: int = 16000
    audio_channels: int = 1
    bands: int = 32
    fine_bins: int = 64
    hidden: int = 128
    layers: int = 2
    min_gain_db: float = -40.0
    frame_ms: float = 20.0
    hop_ms: float = 10.0
    analysis_ms: float = 0.0
    speaker_dim: int = 0


def erb_band_matrix(sample_rate: int, n_fft: int, bands: int) -> np.ndarray:
    """Triangular filters on the ERB-rate scale that sum to one in every bin. Shape: ``[bands, n_fft // 2 + 1]``."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    erb = lambda f: 21.4 * np.log10(1 + 0.00437 * f)  # noqa: E731  (Glasberg & Moore 1990)
    centres_erb = np.linspace(erb(0), erb(sample_rate / 2), bands)
    pos = np.interp(erb(freqs), centres_erb, np.arange(bands))  # fractional band index of each bin
    lo = np.floor(pos).astype(int).clip(0, bands - 1)
    hi = (lo + 1).clip(0, bands - 1)
    frac = pos - lo
    m = np.zeros((bands, len(freqs)))
    m[lo, np.arange(len(freqs))] += 1 - frac
    m[hi, np.arange(len(freqs))] += frac
    return m


class Denoiser(SeparationModel):
    """Causal GRU gain estimator on ERB bands plus fine low-bin gains.

    Shape:
        ``forward``: ``[B, 1, T]`` -> ``[B, 2, 1, T]`` (speech, noise = mixture - speech).
    """

    window: Tensor  # buffers: the sqrt-Hann frame window, band features and their expansion to bins
    analysis_window: Tensor
    bands: Tensor
    expand: Tensor

    def __init__(self, config: DenoiserConfig | None = None, run_rate: int | None = None) -> None:
        """``run_rate``: the rate to run at, if not the trained ``config.sample_rate`` (a higher one;
        see :meth:`at_input_rate`)."""
        super().__init__()
        cfg = config or DenoiserConfig()
        require(cfg.audio_channels == 1, "the denoiser is single-channel (the engine splits multichannel input)")
        rate = run_rate or cfg.sample_rate
        require(rate >= cfg.sample_rate, "the denoiser runs at its trained rate or above")
        self.hop = int(round(rate * cfg.hop_ms / 1000))
        self.win = int(round(rate * cfg.frame_ms / 1000))
        require(self.win % self.hop == 0 and self.win >= self.hop, "the frame must be a whole number of hops")
        self._adopt(cfg, self.hop)
        self.sample_rate = rate
        self.n_fft = self.win
        self.default_segment = 30.0
        bins = self.n_fft // 2 + 1
        trained_fft = int(round(cfg.sample_rate * cfg.frame_ms / 1000))
        trained = erb_band_matrix(cfg.sample_rate, trained_fft, cfg.bands)  # [bands, trained bins], 50 Hz apart as here
        known = min(trained.shape[1], bins)
        features = np.zeros((cfg.bands, bins))
        features[:, :known] = trained[:, :known]
        expand = features.copy()
        expand[-1, known:] = 1.0  # bins above the trained band take the top band's gain
        self.fine = min(cfg.fine_bins, bins)
        self.register_buffer("window", torch.sqrt(torch.hann_window(self.win, periodic=True)), persistent=False)
        self.register_buffer("expand", torch.from_numpy(expand).float(), persistent=False)
        #: the features' window (samples) and low bins: the frame's unless ``analysis_ms`` asks for a longer one
        self.awin, self.fine_features = self.win, self.fine
        analysis_window = self.window
        if cfg.analysis_ms and cfg.analysis_ms != cfg.frame_ms:
            self.awin = int(round(rate * cfg.analysis_ms / 1000))
            require(self.awin > self.win and self.awin % self.hop == 0, "analysis_ms: whole hops, above frame_ms")
            require(rate == cfg.sample_rate, "a model with analysis_ms runs at its trained rate")
            features = erb_band_matrix(cfg.sample_rate, self.awin, cfg.bands)
            self.fine_features = self.fine * self.awin // self.win  # the same low band, finer bins
            analysis_window = torch.hann_window(self.awin, periodic=True)
        self.register_buffer("analysis_window", analysis_window, persistent=False)
        self.register_buffer("bands", torch.from_numpy(features).float(), persistent=False)
        self._rates: dict[int, Denoiser] = {}  # at_input_rate's versions, sharing these weights
        inputs = cfg.bands + self.fine_features
        self.input_norm = nn.LayerNorm(inputs)
        self.gru = nn.GRU(inputs, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.to_band_gains = nn.Linear(cfg.hidden, cfg.bands)
        self.to_fine_gains = nn.Linear(cfg.hidden, self.fine)
        self.speaker_film: nn.Linear | None = None
        if cfg.speaker_dim:
            # speaker -> (scale, shift) of the normalised input and of the GRU output; zero: the plain denoiser
            self.speaker_film = nn.Linear(cfg.speaker_dim, 2 * (inputs + cfg.hidden))
            nn.init.zeros_(self.speaker_film.weight)
            nn.init.zeros_(self.speaker_film.bias)

    def at_input_rate(self, sample_rate: int) -> Denoiser:
        """This model with the same weights running natively at ``sample_rate`` when that is above its
        trained rate and holds whole 10 ms hops (32, 44.1, 48 kHz ...); itself otherwise."""
        cfg = self.config
        if sample_rate <= cfg.sample_rate or (sample_rate * cfg.hop_ms) % 1000 or sample_rate == self.sample_rate:
            return self
        if self.awin != self.win:  # longer feature windows: run at the trained rate (the engine resamples)
            return self
        if sample_rate not in self._rates:
            other = Denoiser(cfg, run_rate=sample_rate)
            for name in ("input_norm", "gru", "to_band_gains", "to_fine_gains"):  # shared, not copied
                setattr(other, name, getattr(self, name))
            self._rates[sample_rate] = other.to(self.window.device).train(self.training)
        return self._rates[sample_rate]

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples: the frame minus one hop."""
        return self.win - self.hop

    # -- frames -----------------------------------------------------------------------------
    def _frames(self, x: Tensor, size: int | None = None) -> Tensor:
        """Causal framing: frame k covers samples ``[k·hop - size + hop, k·hop + hop)`` (``size``: the frame by
        default); trailing frames run past the end (zeros) so the last samples get all their overlapping frames.
        ``[B, T] -> [B, K, size]``, K the same for any size."""
        size = size or self.win
        padded = F.pad(x, (size - self.hop, (-x.shape[-1]) % self.hop + self.win - self.hop))
        return padded.unfold(-1, size, self.hop)

    def _feature_spectra(self, x: Tensor, spec: Tensor | None = None) -> Tensor:
        """The spectra the features are read from: the frames' own (``spec``, when given) unless ``analysis_ms``
        asks for longer windows. ``[B, T] -> [B, K, awin // 2 + 1]`` complex."""
        if spec is not None and self.awin == self.win:
            return spec
        return torch.fft.rfft(self._frames(x, self.awin) * self.analysis_window, n=self.awin)

    def _features(self, spec: Tensor) -> Tensor:
        """The GRU's inputs: band and low-bin levels in dB. ``spec [B, K, F]`` complex -> ``[B, K, bands + fine]``."""
        power = spec.real**2 + spec.imag**2
        band_db = 10 * torch.log10(power @ self.bands.T + 1e-10)
        fine_db = 10 * torch.log10(power[..., : self.fine_features] + 1e-10)
        return torch.cat([band_db, fine_db], dim=-1)

    def film(self, speaker: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Scales and shifts of the GRU's input and output for speaker embeddings ``[B, D]``: four ``[B, 1, n]``."""
        assert self.speaker_film is not None
        inputs = self.input_norm.normalized_shape[0]
        scale_in, shift_in, scale_out, shift_out = self.speaker_film(speaker)[:, None].split(
            [inputs, inputs, self.config.hidden, self.config.hidden], dim=-1
        )
        return 1 + scale_in, shift_in, 1 + scale_out, shift_out

    def _gains(self, spec: Tensor, state: Tensor | None = None, speaker: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Gains from the feature spectra of some frames (:meth:`_feature_spectra`; for a speaker, when
        conditioned). ``spec [B, K, Fa]`` complex -> ``(gains [B, K, F], state)``."""
        x = self.input_norm(self._features(spec))
        if speaker is None:
            h, state = self.gru(x, state)
        else:
            scale_in, shift_in, scale_out, shift_out = self.film(speaker)
            h, state = self.gru(x * scale_in + shift_in, state)
            h = h * scale_out + shift_out
        floor = 10 ** (self.config.min_gain_db / 20)
        band = floor + (1 - floor) * torch.sigmoid(self.to_band_gains(h))
        gains = band @ self.expand
        fine = floor + (1 - floor) * torch.sigmoid(self.to_fine_gains(h))
        gains = torch.cat([gains[..., : self.fine] * fine, gains[..., self.fine :]], dim=-1)
        return gains, state

    def _analyse(self, frames: Tensor) -> Tensor:
        return torch.fft.rfft(frames * self.window, n=self.n_fft)

    def _synthesise(self, spec: Tensor) -> Tensor:
        return torch.fft.irfft(spec, n=self.n_fft)[..., : self.win] * self.window

    def _norm(self) -> float:
        """Overlap-add scale of the sqrt-Hann analysis/synthesis pair."""
        return float((self.window**2).sum() / self.hop)

    def forward(self, mix: Tensor) -> Tensor:
        return self.separate(mix)

    def separate(self, mix: Tensor, speaker: Tensor | None = None) -> Tensor:
        """The forward pass, for the voice of ``speaker`` embeddings ``[B, D]`` when conditioned."""
        b, _, length = mix.shape
        x = mix[:, 0]
        spec = self._analyse(self._frames(x))  # [B, K, F]
        gains, _ = self._gains(self._feature_spectra(x, spec), speaker=speaker)
        out_frames = self._synthesise(spec * gains) / self._norm()  # [B, K, win]
        k = out_frames.shape[1]
        total = (k - 1) * self.hop + self.win
        speech = F.fold(
            out_frames.transpose(1, 2), output_size=(1, total), kernel_size=(1, self.win), stride=(1, self.hop)
        )[:, 0, 0]
        # frame k's samples start at k·hop - (win - hop): drop the lead so output aligns with input
        speech = speech[:, self.win - self.hop : self.win - self.hop + length]
        speech = F.pad(speech, (0, length - speech.shape[-1]))
        speech = speech[:, None]
        return torch.stack([speech, mix - speech], dim=1)


class StreamingDenoiser:
    """Frame-by-frame use of a :class:`Denoiser`: feed blocks of any size, get the denoised
    signal back delayed by ``model.latency`` samples (the first ones are zeros).

    The per-frame path is plain numpy (FFT, ERB bands, layer norm, GRU cells, gains) with the
    model's weights, because per-call framework overhead would dominate 10 ms hops; it gives
    the offline model's output (tested to 1e-5).

    Examples:
        >>> stream = StreamingDenoiser(Denoiser().eval())
        >>> out = [stream.process(block) for block in np.split(np.zeros(16000, np.float32), 10)]
    """

    def __init__(self, model: Denoiser, atten_lim: float | None = None, speaker: Tensor | None = None) -> None:
        """``atten_lim``: remove at most this many dB of noise, as ``--atten-lim`` does offline (``None``: the
        model's ``default_atten_lim``, which a shipped card sets; ``inf``: no limit). ``speaker``: the embedding
        of the voice to keep, for a speaker-conditioned model (default: the one it was enrolled with)."""
        m = model.eval()
        film = None
        if m.speaker_film is not None:
            if speaker is None:
                require(bool(getattr(m, "is_enrolled", False)), "enrol the voice first (model.enroll(clip, rate))")
                speaker = cast(Tensor, m.enrolled)[0]
            with torch.inference_mode():
                film = [f[0, 0].cpu().numpy() for f in m.film(speaker.reshape(1, -1).to(m.window.device).float())]
        # speech + keep * noise = (keep + (1 - keep) * gains) * spectrum: the offline mix-back, folded into the gains
        self.keep = np.float32(m.kept_noise(atten_lim) or 0.0)
        self.model = m
        self.hop, self.win, self.fine, self.awin = m.hop, m.win, m.fine, m.awin
        #: samples the output lags the input: the frame minus one hop
        self.latency = m.latency
        get = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        floor = np.float32(10 ** (m.config.min_gain_db / 20))
        bands = get(m.bands)
        bins = bands.shape[1]
        # Folded once so that a frame costs few numpy calls (the per-call overhead dominates at 10 ms hops):
        # band energies and low-bin powers in one matrix; the input layer norm's affine into the first GRU
        # layer; both gain heads in one matrix; the gain floor into the band-to-bin matrix (bands sum to 1).
        self.features = np.vstack([bands, np.eye(m.fine_features, bins, dtype=np.float32)])
        self.ln_eps = np.float32(m.input_norm.eps)
        self.mean_row = np.full(self.features.shape[0], 1.0 / self.features.shape[0], np.float32)
        ln_w, ln_b = get(m.input_norm.weight), get(m.input_norm.bias)
        heads = np.vstack([get(m.to_band_gains.weight), get(m.to_fine_gains.weight)])
        heads_b = np.concatenate([get(m.to_band_gains.bias), get(m.to_fine_gains.bias)])
        if film is not None:  # the speaker's scale and shift, folded into the input norm's affine and the heads
            scale_in, shift_in, scale_out, shift_out = film
            ln_w, ln_b = ln_w * scale_in, ln_b * scale_in + shift_in
            heads, heads_b = heads * scale_out[None, :], heads_b + heads @ shift_out
        self.gru = []
        for k in range(m.gru.num_layers):
            w_ih, w_hh = get(getattr(m.gru, f"weight_ih_l{k}")), get(getattr(m.gru, f"weight_hh_l{k}"))
            b_ih, b_hh = get(getattr(m.gru, f"bias_ih_l{k}")), get(getattr(m.gru, f"bias_hh_l{k}"))
            if k == 0:
                w_ih, b_ih = np.ascontiguousarray(w_ih * ln_w[None, :]), b_ih + w_ih @ ln_b
            self.gru.append((w_ih, w_hh, b_ih, b_hh))
        self.n = m.config.hidden
        self.heads, self.heads_b = heads.astype(np.float32), heads_b.astype(np.float32)
        self.nbands = bands.shape[0]
        self.feature_window = None if self.awin == self.win else get(m.analysis_window)
        self.band_to_bins = (1 - floor) * get(m.expand)
        self.floor = floor
        self.analysis = get(m.window)
        self.synthesis = get(m.window) / np.float32(m._norm())
        self.h = [np.zeros(self.n, np.float32) for _ in self.gru]
        self.frame = np.zeros(self.awin, np.float32)  # the last awin samples (the frame: the last win of them)
        self.pending = np.zeros(0, np.float32)  # input samples short of a whole hop
        self.tail = np.zeros(self.win - self.hop, np.float32)  # overlap-add carry

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        """The last ``awin`` samples in, one windowed synthesis frame out (float32 throughout)."""
        spec = np.fft.rfft(frame[-self.win :] * self.analysis)
        seen = spec if self.feature_window is None else np.fft.rfft(frame * self.feature_window)
        feats = np.log10(self.features @ np.square(np.abs(seen)) + np.float32(1e-10))
        feats -= self.mean_row @ feats  # a dot product: ndarray.mean() costs 5x more on short vectors
        x = feats * (np.float32(10) / np.sqrt(np.float32(100) * (self.mean_row @ np.square(feats)) + self.ln_eps))
        n = self.n
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.gru):
            gi = w_ih @ x + b_ih
            gh = w_hh @ self.h[k] + b_hh
            rz = expit(gi[: 2 * n] + gh[: 2 * n])
            cand = np.tanh(gi[2 * n :] + rz[:n] * gh[2 * n :])
            self.h[k] = x = cand + rz[n:] * (self.h[k] - cand)
        g = expit(self.heads @ x + self.heads_b)
        gains = self.floor + g[: self.nbands] @ self.band_to_bins
        gains[: self.fine] *= self.floor + (1 - self.floor) * g[self.nbands :]
        if self.keep:
            gains = self.keep + (1 - self.keep) * gains
        return np.fft.irfft(spec * gains, n=self.win) * self.synthesis

    def process(self, block: np.ndarray) -> np.ndarray:
        """Denoise the next samples. Shape: ``[n]`` -> ``[m]`` float32 (m: the whole hops available so far)."""
        block = np.asarray(block, np.float32).reshape(-1)
        if self.pending.size:
            block = np.concatenate([self.pending, block])
        hop = self.hop
        hops = block.size // hop
        self.pending = block[hops * hop :].copy()
        out = np.empty(hops * hop, np.float32)
        frame, tail = self.frame, self.tail
        for k in range(hops):
            frame[:-hop] = frame[hop:]  # the frame slides by one hop
            frame[-hop:] = block[k * hop : (k + 1) * hop]
            y = self._frame(frame)
            out[k * hop : (k + 1) * hop] = tail[:hop] + y[:hop]
            keep = tail.size - hop  # overlap-add: what later hops still get from earlier frames
            tail[:keep] = tail[hop:]
            tail[keep:] = 0.0
            tail += y[hop:]
        return out

    def flush(self) -> np.ndarray:
        """The samples still held back (``latency`` of them, completed to whole hops), after padding with zeros."""
        rest = (-len(self.pending)) % self.hop + (self.win - self.hop)
        return self.process(np.zeros(rest, np.float32))
