"""Target-speaker extraction: keep one voice from a mixture, named by an enrolment clip of it.

A speaker encoder (log-mel frames -> a 1-D conv stack -> mean and standard-deviation pooling ->
a unit-length embedding) is trained jointly with a speaker-conditioned Conv-TasNet (FiLM on the
TCN input at the start of every repeat), in the spirit of SpEx+ (Ge et al. 2020) and VoiceFilter
(Wang et al. 2019). Outputs: ``target`` (the enrolled voice) and ``residual`` (everything else),
so the two add up to the mixture's estimate like every other demixer model.

The engine runs models as ``forward(mix)``; an extractor is told whom to keep first with
:meth:`TargetSpeakerExtractor.enroll` (``--enroll voice.wav``), or gets enrolment clips per batch
in training (``forward(mix, enrollment)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionsError, require
from ..transforms import STFT
from ..transforms.mel import mel_filterbank
from .convtasnet import ACTIVATIONS, ConvTasNet, ConvTasNetConfig, TCNBlock

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


class SpeakerEncoder(nn.Module):
    """Utterance -> unit-length speaker embedding (length independent, zero-padding aware only by content).

    Shape:
        ``forward``: ``[B, 1, T]`` or ``[B, T]`` -> ``[B, speaker_dim]``.
    """

    def __init__(self, cfg: SpeakerExtractorConfig) -> None:
        super().__init__()
        n_fft = 1 << (int(round(0.025 * cfg.sample_rate)) - 1).bit_length()  # >= 25 ms windows
        self.stft = STFT(n_fft, int(round(0.010 * cfg.sample_rate)))
        self.register_buffer(
            "mel", torch.from_numpy(mel_filterbank(cfg.sample_rate, n_fft, cfg.n_mels, fmin=40.0)), persistent=False
        )
        layers: list[nn.Module] = []
        channels = cfg.n_mels
        for i in range(cfg.encoder_layers):
            layers += [
                nn.Conv1d(channels, cfg.encoder_channels, 5, dilation=2**i, padding=2 * 2**i),
                nn.ReLU(),
                nn.GroupNorm(1, cfg.encoder_channels),
            ]
            channels = cfg.encoder_channels
        self.convs = nn.Sequential(*layers)
        self.project = nn.Linear(2 * cfg.encoder_channels, cfg.speaker_dim)

    def forward(self, wav: Tensor) -> Tensor:
        if wav.dim() == 3:
            wav = wav.mean(1)
        power = self.stft(wav).abs().pow(2)  # [B, F, frames]
        feats = torch.log(torch.einsum("mf,bft->bmt", self.mel, power) + 1e-6)
        feats = feats - feats.mean(dim=-1, keepdim=True)  # per-utterance mean normalisation (channel effects)
        h = self.convs(feats)
        stats = torch.cat([h.mean(-1), h.std(-1)], dim=-1)
        return F.normalize(self.project(stats), dim=-1)


class TargetSpeakerExtractor(ConvTasNet):
    """Speaker-conditioned Conv-TasNet with its own speaker encoder.

    Shape:
        ``forward``: ``mix [B, 1, T]`` (+ ``enrollment [B, 1, Te]`` in training) -> ``[B, 2, 1, T]``
        (``target``, ``residual``).
    """

    needs_enrollment = True

    def __init__(self, config: SpeakerExtractorConfig | None = None) -> None:
        cfg = config or SpeakerExtractorConfig()
        require(cfg.speaker_dim > 0, "an extractor needs speaker_dim > 0")
        super().__init__(cfg)
        self.speaker_encoder = SpeakerEncoder(cfg)
        self.register_buffer("enrolled", torch.zeros(0, cfg.speaker_dim), persistent=False)
        #: an enrolment clip whose windows agree with the whole below this (cosine) holds several voices; set by
        #: a shipped model's card, calibrated on single- and two-talker clips (None: not checked)
        self.min_enrollment_consistency: float | None = None

    @property
    def is_enrolled(self) -> bool:
        return bool(self.enrolled.shape[0])

    def embed(self, enrollment: Tensor) -> Tensor:
        """Speaker embeddings of enrolment clips. Shape: ``[B, 1, Te]`` -> ``[B, speaker_dim]``."""
        return self.speaker_encoder(enrollment)

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
        """How much the parts of an enrolment clip sound like one voice: the lowest cosine similarity between a
        window's embedding (``window`` s, half-overlapping) and the whole clip's. One talker scores near 1;
        a clip that changes voice scores lower. Shape: ``clip [1, 1, T]``."""
        size, hop = int(window * self.sample_rate), int(window * self.sample_rate / 2)
        if clip.shape[-1] < 2 * size:
            return 1.0  # too short to split
        parts = clip[0, 0].unfold(0, size, hop)[:, None]  # [W, 1, size]
        whole = self.embed(clip)
        return float((self.embed(parts) @ whole[0]).min())

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

    def forward(self, mix: Tensor, enrollment: Tensor | None = None) -> Tensor:
        if enrollment is not None:
            speaker = self.embed(enrollment)
        elif self.is_enrolled:
            speaker = self.enrolled.expand(mix.shape[0], -1)
        else:
            raise OptionsError(
                "target-speaker extraction needs an enrolment clip of the voice to keep: --enroll voice.wav"
            )
        return super().forward(mix, speaker=speaker)


class StreamingExtractor:
    """Block-by-block use of a causal :class:`TargetSpeakerExtractor` (``causal: true``), for live audio.

    Feed blocks of any size (10 ms in a hearing aid); each call returns as many samples as it was given: the
    ``target`` voice delayed by :attr:`latency` samples, one encoder frame (the first ones are zeros). The
    enrolment embedding is computed once (``model.enroll``, or pass ``speaker``) and fixed for the stream.

    Each new encoder frame goes through the TCN with every dilated convolution fed from a history of its own
    past inputs, and the decoder's frames are overlap-added as they come, so the output is the offline
    model's, sample for sample (tested to 1e-5); nothing looks further ahead than one encoder frame.

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
        self.model, self.stride, self.kernel = m, m.stride, cfg.kernel
        #: samples the output lags the input: one encoder frame less one sample (any block size works)
        self.latency = cfg.kernel - 1
        device = next(m.parameters()).device
        with torch.inference_mode():  # FiLM of each repeat, fixed for the stream: y * (1 + scale) + shift
            self.film = [f(speaker.reshape(1, -1).to(device)).unsqueeze(-1).chunk(2, dim=1) for f in m.film]
        blocks = cast(list[TCNBlock], list(m.tcn))
        self.blocks = blocks
        self.history = [
            torch.zeros(1, cfg.hidden, (cfg.conv_kernel - 1) * b.depthwise.dilation[0], device=device) for b in blocks
        ]
        self.previous = torch.zeros(1, 1, self.stride, device=device)  # the last hop (before the start: padding)
        self.tail = torch.zeros(self.kernel - self.stride, device=device)  # the decoder's overlap-add carry
        self.pending = np.zeros(0, np.float32)  # input short of a whole hop
        self.ready = np.zeros(self.latency, np.float32)  # output made but not given back yet (starts with the delay)
        self.lead = self.stride  # the padding's own output, dropped as offline
        self.device = device

    @torch.inference_mode()
    def _hops(self, hops: Tensor) -> np.ndarray:
        """Target samples finished by ``k`` new hops of input. ``[1, 1, k * stride]`` -> ``[k * stride]``."""
        m, cfg = self.model, self.model.config
        x = torch.cat([self.previous, hops], dim=-1)
        self.previous = x[..., -self.stride :]
        w = ACTIVATIONS[cfg.encoder_activation](m.encoder(x))  # [1, N, k]: a frame per new hop
        y = m.bottleneck(m.norm(w))
        skips: Tensor | int = 0
        for i, block in enumerate(self.blocks):
            if i % m.blocks_per_repeat == 0:
                scale, shift = self.film[i // m.blocks_per_repeat]
                y = y * (1 + scale) + shift
            h = torch.cat([self.history[i], block.norm1(block.act1(block.inp(y)))], dim=-1)
            self.history[i] = h[..., h.shape[-1] - self.history[i].shape[-1] :]
            h = block.norm2(block.act2(block.depthwise(h)))
            y, skips = y + block.res(h), skips + block.skip(h)
        masks = ACTIVATIONS[cfg.mask_activation](m.mask(skips)).reshape(1, len(m.sources), -1, w.shape[-1])
        frames = m.decoder(masks[:, 0] * w)[0, 0]  # the target's frames, overlap-added: [(k - 1) * stride + kernel]
        frames[: self.tail.numel()] += self.tail
        done = frames.numel() - self.tail.numel()  # later frames still add to the rest
        self.tail = frames[done:].clone()
        out = frames[:done].cpu().numpy()
        cut, self.lead = min(self.lead, out.size), self.lead - min(self.lead, out.size)
        return out[cut:]

    def process(self, block: np.ndarray) -> np.ndarray:
        """The next samples of the target voice. Shape: ``[n]`` -> ``[n]`` float32."""
        block = np.asarray(block, np.float32).reshape(-1)
        data = np.concatenate([self.pending, block]) if self.pending.size else block
        whole = data.size - data.size % self.stride
        self.pending = data[whole:].copy()
        if whole:
            hops = torch.from_numpy(np.ascontiguousarray(data[:whole])).to(self.device).reshape(1, 1, -1)
            self.ready = np.concatenate([self.ready, self._hops(hops)])
        given, self.ready = self.ready[: block.size], self.ready[block.size :]
        return given

    def flush(self) -> np.ndarray:
        """The last :attr:`latency` samples, once the input has ended (zeros go through, as offline padding)."""
        more = self.process(np.zeros((-self.pending.size) % self.stride + self.stride, np.float32))
        return np.concatenate([more, self.ready])[: self.latency]
