"""Target-speaker extraction: keep one voice from a mixture, named by an enrolment clip of it.

Two architectures, each with outputs ``target`` (the enrolled voice) and ``residual`` (everything else), so the
two add up to the mixture's estimate like every other demixer model:

- ``speaker_denoiser`` (:class:`SpeakerDenoiser`, shipped as ``demixer-extract``): the causal streaming
  denoiser with a speaker FiLM, conditioned on the published GE2E d-vector (frozen); 10 ms latency.
- ``speaker_extractor`` (:class:`TargetSpeakerExtractor`): a speaker encoder (log-mel frames -> a 1-D conv
  stack -> mean and standard-deviation pooling -> a unit-length embedding) trained jointly with a
  speaker-conditioned Conv-TasNet (FiLM on the TCN input at the start of every repeat), in the spirit of
  SpEx+ (Ge et al. 2020) and VoiceFilter (Wang et al. 2019).

Both share :class:`EnrolledVoice`: the engine runs models as ``forward(mix)``, so an extractor is told whom
to keep first with :meth:`EnrolledVoice.enroll` (``--enroll voice.wav``) or :meth:`EnrolledVoice.load_enrollment`
(``--enroll voice.spk``), or gets enrolment clips per batch in training (``forward(mix, enrollment)``).
:meth:`EnrolledVoice.streaming` gives the block-by-block form for live audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionsError, require
from .convtasnet import ConvTasNet, ConvTasNetConfig, TCNBlock
from .denoiser import Denoiser, DenoiserConfig, StreamingDenoiser
from .voice_encoders import ConvVoiceEncoder, GE2EVoiceEncoder

SPEAKER_FORMAT = "demixer-speaker/1"


@dataclass
class SpeakerExtractorConfig(ConvTasNetConfig):
    """Conv-TasNet settings plus the speaker encoder's.

    Attributes:
        speaker_dim: embedding size.
        encoder_channels: width of the speaker encoder's conv stack.
        encoder_layers: its depth (kernel 5, dilations 1, 2, 4, ...).
        n_mels: mel bands of its input features (windows of at least 25 ms, 10 ms hop).
        min_enrollment: shortest enrolment clip accepted, in seconds.
    """

    sources: tuple[str, ...] = ("target", "residual")
    speaker_dim: int = 128
    encoder_channels: int = 128
    encoder_layers: int = 4
    n_mels: int = 40
    min_enrollment: float = 1.0


class EnrolledVoice(nn.Module):
    """What every target-speaker model does with the voice to keep: enrol it from a clip (checked for length,
    silence and, once a card calibrates it, several talkers), save and load it as a ``.spk`` embedding, and
    hand the embedding to the model's forward.

    A subclass sets ``speaker_encoder`` (a module: clip ``[B, 1, T]`` -> ``[B, D]``) and calls
    :meth:`_init_enrolment`; its config carries ``min_enrollment`` seconds.
    """

    needs_enrollment = True
    speaker_encoder: nn.Module
    enrolled: Tensor
    sample_rate: int
    config: Any

    def _init_enrolment(self, speaker_dim: int) -> None:
        self.register_buffer("enrolled", torch.zeros(0, speaker_dim), persistent=False)
        #: an enrolment clip whose windows agree with the whole below this (cosine) holds several voices; set by
        #: a shipped model's card, calibrated on single- and two-talker clips (None: not checked)
        self.min_enrollment_consistency: float | None = None
        #: an extracted voice whose embedding is less similar (cosine) to the enrolment's is reported as probably
        #: not the enrolled voice; set by a shipped model's card, calibrated on held-out talkers (None: not checked)
        self.min_target_similarity: float | None = None

    @property
    def is_enrolled(self) -> bool:
        return bool(self.enrolled.shape[0])

    def embed(self, enrollment: Tensor) -> Tensor:
        """Speaker embeddings of enrolment clips. Shape: ``[B, 1, Te]`` -> ``[B, speaker_dim]``."""
        return self.speaker_encoder(enrollment)

    def voice(self, embedding: Tensor) -> Tensor:
        """The part of embeddings (:meth:`embed`) that names the voice, at unit length, for cosine checks: all of
        it by default. Shape: ``[..., speaker_dim]`` -> ``[..., D]``."""
        return F.normalize(embedding, dim=-1)

    @torch.no_grad()
    def similarity(self, audio: Tensor) -> float:
        """Cosine between the voice of ``audio`` (``[1, 1, T]``, at the model's rate) and the enrolled one."""
        return float(self.voice(self.embed(audio))[0] @ self.voice(self.enrolled)[0])

    @torch.no_grad()
    def enroll(self, audio: np.ndarray | Tensor, sample_rate: int) -> Tensor:
        """Set the voice to extract from a clip of it (any rate and channel count).

        Args:
            audio: the enrolment clip. Shape: ``[C, T]`` or ``[T]``.

        Raises:
            OptionsError: the clip is shorter than ``min_enrollment`` or silent.
        """
        from ..audio.resample import resample

        x = np.atleast_2d(audio.detach().cpu().numpy() if isinstance(audio, Tensor) else np.asarray(audio, np.float32))
        x = x.mean(0, keepdims=True)
        if sample_rate != self.sample_rate:
            x = resample(x, sample_rate, self.sample_rate)
        seconds = x.shape[-1] / self.sample_rate
        if seconds < self.config.min_enrollment:
            raise OptionsError(
                f"--enroll: the clip is {seconds:.2f} s long; give at least "
                f"{self.config.min_enrollment:g} s of the target voice"
            )
        if float(np.sqrt(np.mean(np.square(x)))) < 1e-4:
            raise OptionsError("--enroll: the clip is silent")
        device = next(self.parameters()).device
        clip = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None].to(device)
        if self.min_enrollment_consistency is not None:
            consistency = self.enrollment_consistency(clip)
            if consistency < self.min_enrollment_consistency:
                raise OptionsError(
                    f"--enroll: the clip seems to hold several voices (its parts agree to {consistency:.2f}, "
                    f"below {self.min_enrollment_consistency:.2f}); give a clip of the target voice alone"
                )
        self.enrolled = self.embed(clip)
        return self.enrolled[0]

    @torch.no_grad()
    def enrollment_consistency(self, clip: Tensor, window: float = 1.5) -> float:
        """How much the parts of an enrolment clip sound like one voice: the lowest cosine similarity between the
        embeddings of two of its windows (``window`` s, half-overlapping). One talker scores higher; a clip that
        changes voice scores lower (on 60 calibration clips of 4-8 s, pairs of windows separated one-talker from
        half-and-half clips better than windows against the whole: benchmarks/enrolment_checks.py).
        Shape: ``clip [1, 1, T]``."""
        size, hop = int(window * self.sample_rate), int(window * self.sample_rate / 2)
        if clip.shape[-1] < 2 * size:
            return 1.0  # too short to split
        parts = self.voice(self.embed(clip[0, 0].unfold(0, size, hop)[:, None]))  # [W, D]
        return float((parts @ parts.T).min())

    def voice_fingerprint(self) -> str:
        """SHA-256 of the speaker encoder's weights: an enrolment embedding is only valid for this encoder."""
        import hashlib

        digest = hashlib.sha256()
        for name, tensor in sorted(self.speaker_encoder.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def save_enrollment(self, path: str | Path, source: str = "") -> Path:
        """Save the enrolled voice (its embedding only: no audio) as a ``.spk`` file for later ``--enroll``."""
        from safetensors.torch import save_file

        require(self.is_enrolled, "nothing is enrolled yet (call enroll first)")
        path = Path(path)
        meta = {"format": SPEAKER_FORMAT, "encoder_sha256": self.voice_fingerprint(), "source": source}
        save_file({"embedding": self.enrolled[0].detach().cpu().contiguous()}, str(path), metadata=meta)
        return path

    def load_enrollment(self, path: str | Path) -> Tensor:
        """Enrol from a ``.spk`` file made by this model (:meth:`save_enrollment`).

        Raises:
            OptionsError: not a speaker file, or made by another speaker encoder.
        """
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                embedding = f.get_tensor("embedding")
        except Exception as exc:
            raise OptionsError(f"--enroll: {path} is not a speaker file ({exc})") from None
        if meta.get("format") != SPEAKER_FORMAT:
            raise OptionsError(f"--enroll: {path} is not a {SPEAKER_FORMAT} file")
        if meta.get("encoder_sha256") != self.voice_fingerprint():
            raise OptionsError(
                f"--enroll: {path} was made with another model's speaker encoder; enrol again with this model "
                "(demixer enroll voice.wav -o voice.spk -n MODEL)"
            )
        require(embedding.numel() == self.config.speaker_dim, f"{path}: embedding size does not fit this model")
        self.enrolled = embedding.reshape(1, -1).to(next(self.parameters()).device)
        return self.enrolled[0]

    def streaming(self, speaker: Tensor | None = None) -> Any:
        """The block-by-block form of this model for live audio (``process(block) -> block``, ``flush()``,
        ``latency``), keeping ``speaker`` (an embedding; default: the enrolled voice). Output equals offline."""
        raise NotImplementedError

    def speaker(self, mix: Tensor, enrollment: Tensor | None = None) -> Tensor:
        """The embeddings to condition on: of ``enrollment`` clips (training), else the enrolled voice's."""
        if enrollment is not None:
            return self.embed(enrollment)
        if self.is_enrolled:
            return self.enrolled.expand(mix.shape[0], -1)
        raise OptionsError("target-speaker extraction needs an enrolment clip of the voice to keep: --enroll voice.wav")


class TargetSpeakerExtractor(EnrolledVoice, ConvTasNet):
    """Speaker-conditioned Conv-TasNet with its own speaker encoder, trained jointly.

    Shape:
        ``forward``: ``mix [B, 1, T]`` (+ ``enrollment [B, 1, Te]`` in training) -> ``[B, 2, 1, T]``
        (``target``, ``residual``).
    """

    def __init__(self, config: SpeakerExtractorConfig | None = None) -> None:
        cfg = config or SpeakerExtractorConfig()
        require(cfg.speaker_dim > 0, "an extractor needs speaker_dim > 0")
        ConvTasNet.__init__(self, cfg)
        self.speaker_encoder = ConvVoiceEncoder(
            cfg.sample_rate, cfg.speaker_dim, cfg.encoder_channels, cfg.encoder_layers, cfg.n_mels
        )
        self._init_enrolment(cfg.speaker_dim)

    def streaming(self, speaker: Tensor | None = None) -> StreamingExtractor:
        return StreamingExtractor(self, speaker)

    def forward(self, mix: Tensor, enrollment: Tensor | None = None) -> Tensor:
        return ConvTasNet.forward(self, mix, speaker=self.speaker(mix, enrollment))


@dataclass
class SpeakerDenoiserConfig(DenoiserConfig):
    """The streaming denoiser's settings with a speaker embedding of ``speaker_dim`` (the GE2E encoder's 256).

    Attributes:
        min_enrollment: shortest enrolment clip accepted, in seconds.
        profile: also condition on the enrolment's average frame features (the GRU's own 96 inputs,
            standardised, times 0.05), appended to the d-vector: ``speaker_dim`` is then 256 + those inputs.
    """

    sources: tuple[str, ...] = ("target", "residual")
    speaker_dim: int = 256
    min_enrollment: float = 2.0
    profile: bool = False


class SpeakerDenoiser(EnrolledVoice, Denoiser):
    """The causal band-gain denoiser told whose voice to keep: a personalised denoiser in the spirit of
    personalised PercepNet and pDCCRN. The frozen GE2E encoder (:class:`GE2EVoiceEncoder`) embeds the
    enrolment once; the embedding scales and shifts the GRU's input and output features (FiLM, zero at
    initialisation, so training can start from ``demixer-denoise``'s weights). 10 ms latency, streamed by
    :class:`~demixer.models.denoiser.StreamingDenoiser` at the denoiser's cost.

    Shape:
        ``forward``: ``mix [B, 1, T]`` (+ ``enrollment [B, 1, Te]`` in training) -> ``[B, 2, 1, T]``
        (``target``, ``residual``).
    """

    def __init__(self, config: SpeakerDenoiserConfig | None = None) -> None:
        cfg = config or SpeakerDenoiserConfig()
        require(cfg.sample_rate == GE2EVoiceEncoder.sample_rate, "speaker_denoiser runs at 16 kHz")
        Denoiser.__init__(self, cfg)
        profile = self.input_norm.normalized_shape[0] if cfg.profile else 0
        require(
            cfg.speaker_dim == GE2EVoiceEncoder.dim + profile,
            f"speaker_denoiser's speaker_dim is the GE2E embedding's {GE2EVoiceEncoder.dim} (+ {profile} profile "
            f"features): {GE2EVoiceEncoder.dim + profile}",
        )
        self.speaker_encoder = GE2EVoiceEncoder()
        self._init_enrolment(cfg.speaker_dim)

    def embed(self, enrollment: Tensor) -> Tensor:
        """The GE2E d-vector of enrolment clips, and with ``profile`` their average frame features.
        Shape: ``[B, 1, Te]`` -> ``[B, speaker_dim]``."""
        voice = self.speaker_encoder(enrollment)
        if not self.config.profile:
            return voice
        feats = self._features(self._feature_spectra(enrollment[:, 0]))  # [B, K, inputs] dB
        level = torch.logsumexp(feats[..., : self.config.bands] * (np.log(10) / 10), dim=-1)  # ln of frame energy
        active = (level > level.amax(-1, keepdim=True) - np.log(1e4)).float()[..., None]  # within 40 dB of the peak
        mean = (feats * active).sum(1) / active.sum(1)
        profile = (mean - mean.mean(-1, keepdim=True)) / (mean.std(-1, keepdim=True) + 1e-5)
        return torch.cat([voice, 0.05 * profile], dim=-1)

    def voice(self, embedding: Tensor) -> Tensor:
        """The GE2E d-vector part (the profile describes the recording as much as the voice)."""
        return F.normalize(embedding[..., : GE2EVoiceEncoder.dim], dim=-1)

    def at_input_rate(self, sample_rate: int) -> SpeakerDenoiser:
        """Itself: the engine resamples other rates to 16 kHz, where the speaker encoder and FiLM were trained."""
        return self

    def streaming(self, speaker: Tensor | None = None) -> StreamingDenoiser:
        return StreamingDenoiser(self, atten_lim=float("inf"), speaker=speaker)

    def forward(self, mix: Tensor, enrollment: Tensor | None = None) -> Tensor:
        return self.separate(mix, speaker=self.speaker(mix, enrollment))


_AVERAGES: dict[int, np.ndarray] = {}  # row vectors that average a column, by length


class _BlockWeights(NamedTuple):
    """One TCN block's weights as numpy arrays (:class:`StreamingExtractor`)."""

    inp_w: np.ndarray
    inp_b: np.ndarray
    act1: float
    norm1: tuple[np.ndarray, np.ndarray, float]
    depthwise_w: np.ndarray
    depthwise_b: np.ndarray
    dilation: int
    act2: float
    norm2_eps: float  # the second norm's scale and shift are folded into out_w and out_b
    out_w: np.ndarray  # the residual and skip 1x1 convolutions stacked: one product gives both
    out_b: np.ndarray


class StreamingExtractor:
    """Block-by-block use of a causal :class:`TargetSpeakerExtractor` (``causal: true``), for live audio.

    Feed blocks of any size (10 ms in a hearing aid); each call returns as many samples as it was given: the
    ``target`` voice delayed by :attr:`latency` samples, one encoder frame less one sample (the first ones are
    zeros). The enrolment embedding is computed once (``model.enroll``, or pass ``speaker``) and fixed for the
    stream, so the FiLM of each repeat is folded into constants.

    The per-block path is plain numpy with the model's weights (per-call framework overhead would dominate
    10 ms blocks, as in :class:`~demixer.models.denoiser.StreamingDenoiser`): each new encoder frame goes
    through the TCN with every dilated convolution fed from a history of its own past inputs, and the decoder's
    frames are overlap-added as they come, so the output is the offline model's (tested to 1e-5).

    Shape:
        :meth:`process`: ``[n]`` -> ``[n]`` float32; :meth:`flush`: the last ``latency`` samples.
    """

    def __init__(self, model: TargetSpeakerExtractor, speaker: Tensor | None = None) -> None:
        m = model.eval()
        cfg = m.config
        require(cfg.causal, "streaming needs a causal extractor (config causal: true)")
        require(cfg.pad_edges, "streaming follows the model's edge padding (config pad_edges: true)")
        if speaker is None:
            require(m.is_enrolled, "enrol the voice first (model.enroll(clip, rate)) or pass its embedding")
            speaker = m.enrolled[0]
        self.stride, self.kernel = m.stride, cfg.kernel
        #: samples the output lags the input: one encoder frame less one sample (any block size works)
        self.latency = cfg.kernel - 1
        get = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        with torch.inference_mode():
            film = [f(speaker.reshape(1, -1).to(next(m.parameters()).device))[0] for f in m.film]
        self.film = [(1 + get(f[: cfg.bottleneck])[:, None], get(f[cfg.bottleneck :])[:, None]) for f in film]
        self.encoder = get(m.encoder.weight)[:, 0]  # [N, kernel]
        self.encoder_relu = cfg.encoder_activation == "relu"
        self.sigmoid_masks = cfg.mask_activation == "sigmoid"
        self.norm = self._norm(m.norm)
        self.bottleneck = (get(m.bottleneck.weight)[:, :, 0], get(m.bottleneck.bias)[:, None])
        self.blocks = [
            _BlockWeights(
                get(b.inp.weight)[:, :, 0],
                get(b.inp.bias)[:, None],
                float(b.act1.weight.detach()),
                self._norm(b.norm1),
                get(b.depthwise.weight)[:, 0],
                get(b.depthwise.bias)[:, None],
                int(b.depthwise.dilation[0]),
                float(b.act2.weight.detach()),
                self._norm(b.norm2)[2],
                *self._after_norm(
                    self._norm(b.norm2),
                    np.concatenate([get(b.res.weight)[:, :, 0], get(b.skip.weight)[:, :, 0]]),
                    np.concatenate([get(b.res.bias), get(b.skip.bias)])[:, None],
                ),
            )
            for b in cast(list[TCNBlock], list(m.tcn))
        ]
        self.per_repeat = m.blocks_per_repeat
        mask_act, mask_conv = cast(nn.PReLU, m.mask[0]), cast(nn.Conv1d, m.mask[1])
        self.mask_prelu = float(mask_act.weight.detach())
        self.mask = (get(mask_conv.weight)[: cfg.filters, :, 0], get(mask_conv.bias)[: cfg.filters, None])  # target
        self.decoder = get(m.decoder.weight)[:, 0]  # [N, kernel]
        self.history = [np.zeros((cfg.hidden, (cfg.conv_kernel - 1) * b.dilation), np.float32) for b in self.blocks]
        self.previous = np.zeros(self.stride, np.float32)  # the last hop (before the start: the padding)
        self.tail = np.zeros(self.kernel - self.stride, np.float32)  # the decoder's overlap-add carry
        self.pending = np.zeros(0, np.float32)  # input short of a whole hop
        self.ready = np.zeros(self.latency, np.float32)  # output made, not given back yet (starts with the delay)
        self.lead = self.stride  # the padding's own output, dropped as offline

    @staticmethod
    def _norm(module: nn.Module) -> tuple[np.ndarray, np.ndarray, float]:
        ln = cast(nn.LayerNorm, cast(Any, module).norm)
        return (
            ln.weight.detach().cpu().numpy()[:, None],
            cast(Tensor, ln.bias).detach().cpu().numpy()[:, None],
            float(ln.eps),
        )

    @staticmethod
    def _after_norm(
        norm: tuple[np.ndarray, np.ndarray, float], w: np.ndarray, b: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A norm's scale and shift folded into the 1x1 convolution after it: ``w @ (g * x + s) + b``."""
        return (w * norm[0][:, 0][None]).astype(np.float32), (w @ norm[1] + b).astype(np.float32)

    @staticmethod
    def _standardise(x: np.ndarray, eps: float) -> np.ndarray:
        """Each frame (column) to zero mean and unit variance over channels. ``[C, k]``. Means as a row-vector
        product: on 10-frame blocks numpy's ``mean`` costs more than the arithmetic."""
        average = _AVERAGES.get(x.shape[0])
        if average is None:
            average = _AVERAGES[x.shape[0]] = np.full((1, x.shape[0]), 1.0 / x.shape[0], np.float32)
        centred = x - average @ x
        return centred / np.sqrt(average @ (centred * centred) + eps)

    @classmethod
    def _layer_norm(cls, x: np.ndarray, norm: tuple[np.ndarray, np.ndarray, float]) -> np.ndarray:
        return cls._standardise(x, norm[2]) * norm[0] + norm[1]

    @staticmethod
    def _prelu(x: np.ndarray, a: float) -> np.ndarray:
        return np.maximum(x, a * x) if 0.0 <= a <= 1.0 else np.where(x >= 0, x, a * x)

    def _hops(self, hops: np.ndarray) -> np.ndarray:
        """Target samples finished by ``k`` new hops of input. ``[k * stride]`` -> samples."""
        s, kernel = self.stride, self.kernel
        x = np.concatenate([self.previous, hops])
        self.previous = x[-s:]
        k = hops.size // s
        frames = np.lib.stride_tricks.sliding_window_view(x, kernel)[::s][:k].T  # [kernel, k]
        w = self.encoder @ frames
        if self.encoder_relu:
            w = np.maximum(w, 0)
        y = self.bottleneck[0] @ self._layer_norm(w, self.norm) + self.bottleneck[1]
        skips = np.zeros_like(y)
        for i, b in enumerate(self.blocks):
            if i % self.per_repeat == 0:
                scale, shift = self.film[i // self.per_repeat]
                y = y * scale + shift
            h = self._layer_norm(self._prelu(b.inp_w @ y + b.inp_b, b.act1), b.norm1)
            h = np.concatenate([self.history[i], h], axis=1)
            self.history[i] = h[:, h.shape[1] - self.history[i].shape[1] :]
            taps = b.depthwise_w.shape[1]
            conv = b.depthwise_b + b.depthwise_w[:, :1] * h[:, :k]
            for j in range(1, taps):
                conv = conv + b.depthwise_w[:, j : j + 1] * h[:, j * b.dilation : j * b.dilation + k]
            h = self._standardise(self._prelu(conv, b.act2), b.norm2_eps)
            both = b.out_w @ h + b.out_b
            y = y + both[: y.shape[0]]
            skips = skips + both[y.shape[0] :]
        logits = self.mask[0] @ self._prelu(skips, self.mask_prelu) + self.mask[1]
        masks = 1 / (1 + np.exp(-logits)) if self.sigmoid_masks else np.maximum(logits, 0)
        pieces = self.decoder.T @ (masks * w)  # [kernel, k]: each frame's synthesis
        out = np.zeros((k - 1) * s + kernel, np.float32)
        for j in range(kernel // s):  # overlap-add in stride-long slabs
            out[j * s : j * s + k * s] += pieces[j * s : (j + 1) * s].T.reshape(-1)
        out[: self.tail.size] += self.tail
        done = out.size - self.tail.size  # later frames still add to the rest
        self.tail = out[done:].copy()
        out = out[:done]
        cut = min(self.lead, out.size)
        self.lead -= cut
        return out[cut:]

    def process(self, block: np.ndarray) -> np.ndarray:
        """The next samples of the target voice. Shape: ``[n]`` -> ``[n]`` float32."""
        block = np.asarray(block, np.float32).reshape(-1)
        data = np.concatenate([self.pending, block]) if self.pending.size else block
        whole = data.size - data.size % self.stride
        self.pending = data[whole:].copy()
        if whole:
            self.ready = np.concatenate([self.ready, self._hops(data[:whole]).astype(np.float32)])
        given, self.ready = self.ready[: block.size], self.ready[block.size :]
        return given

    def flush(self) -> np.ndarray:
        """The last :attr:`latency` samples, once the input has ended (zeros go through, as offline padding)."""
        more = self.process(np.zeros((-self.pending.size) % self.stride + self.stride, np.float32))
        return np.concatenate([more, self.ready])[: self.latency]
