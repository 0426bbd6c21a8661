"""The contract every separation model fulfils, trained network or signal-processing method."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from torch import Tensor, nn

from .blocks.fusion import Fusable


@dataclass(frozen=True)
class FastRecipe:
    """What ``--fast`` changes for an architecture (:mod:`demixer.models.fast` applies it).

    Each step was kept because it was measured to pay for its quality cost (``benchmarks/fast_mode.py``).

    Attributes:
        int8_linear: dynamic int8 quantisation of every ``nn.Linear`` (weights per output channel, stored
            once in a cache file; activations quantised per call). CPU only.
        bf16: run the rest under bfloat16 autocast, where the device computes bf16 natively (CPUs with
            AVX512-BF16 or AMX; CUDA with bf16 support); otherwise float32.
        overlap: chunk overlap fraction used instead of the model's :attr:`SeparationModel.default_overlap`
            (a user's ``--overlap`` still wins).
    """

    int8_linear: bool = False
    bf16: bool = False
    overlap: float | None = None


class SeparationModel(nn.Module):
    """Base class: a mixture waveform in, one waveform per source out.

    Models do no I/O, resampling or chunking; the separation engine does that and can run
    any subclass. Subclasses set the class (or instance) attributes below and implement
    :meth:`forward` for inputs of any length ``T >= 1``.

    Attributes:
        sources: names of the output stems, in output order.
        sample_rate: the rate the model works at; the engine resamples to it.
        audio_channels: channels the model expects (``None``: any count, as given).
        time_quantum: chunk starts are placed on multiples of this many samples (an STFT
            model's hop), so chunked output equals unchunked output.
        default_segment: seconds per chunk when the user does not choose.
        default_overlap: fraction of a chunk shared with its neighbours when the user does not choose.
        elastic_segment: the model takes chunks of any length, so the engine may stretch or shrink
            them to tile a track with fewer chunks (a model trained at one fixed length says no).
        is_denoiser: the model has a ``noise`` stem that ``--atten-lim`` may mix back.
        default_atten_lim: the most noise, in dB, a denoiser removes when the user gives no ``--atten-lim``
            (``None``: no limit); a shipped model's card sets it in its ``inference`` entry.
        fast_recipe: what ``--fast`` changes for this architecture (``None``: no fast mode; it runs exact).
        band_extension: on input above the model's rate, give the stems the input's band above the
            model's Nyquist frequency, shared by their energy just below it
            (:mod:`demixer.separation.band_extension`); for low-rate models (8 kHz speech).
        unordered_sources: the stems have no fixed meaning (speakers): the engine downmixes the input to
            the model's channels and gives each chunk's stems the order that best continues the previous
            chunk's, on the samples they share (:mod:`demixer.separation.chunking`).

    Shape:
        ``forward``: ``[B, C, T]`` -> ``[B, S, C, T]``.
    """

    sources: tuple[str, ...] = ()
    sample_rate: int = 44100
    audio_channels: int | None = None
    time_quantum: int = 1
    default_segment: float = 10.0
    default_overlap: float = 0.25
    elastic_segment: bool = False
    band_extension: bool = False
    unordered_sources: bool = False
    default_atten_lim: float | None = None
    fast_recipe: FastRecipe | None = None

    @property
    def is_denoiser(self) -> bool:
        return "noise" in self.sources

    def kept_noise(self, atten_lim: float | None = None) -> float | None:
        """The fraction of the ``noise`` stem mixed back for ``--atten-lim DB`` (``10^(-DB/20)``); ``atten_lim=None``
        takes :attr:`default_atten_lim`. ``None`` when nothing is mixed back: no limit (``inf``) or no noise stem."""
        return atten_gain(self.default_atten_lim if atten_lim is None else atten_lim) if self.is_denoiser else None

    def forward(self, mix: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def fuse_for_inference(self) -> SeparationModel:
        """Switch on every fused inference path of this model's modules (see
        :mod:`demixer.models.blocks.fusion`) and put it in eval mode; returns ``self``.

        The output equals :meth:`forward`'s reference output within float rounding; a fused model
        runs only where autograd does not record. :meth:`unfuse` switches back.
        """
        self.eval()
        for module in self.modules():
            if isinstance(module, Fusable):
                module.fused = True
        return self

    def unfuse(self) -> SeparationModel:
        """Back to the reference computation everywhere (e.g. to train a model the engine fused)."""
        for module in self.modules():
            if isinstance(module, Fusable):
                module.fused = False
        return self

    def at_input_rate(self, sample_rate: int) -> SeparationModel:
        """A version of this model that works natively at ``sample_rate`` with the same weights, so the
        engine need not resample (e.g. a band-gain denoiser on a higher rate); ``self`` by default."""
        return self

    def streamed_modules(self) -> list[str]:
        """Submodules run once per chunk whose weights may stay in a memory-mapped checkpoint
        between uses (:func:`demixer.models.mapped.map_weights`); none by default."""
        return []

    def _adopt(self, config, time_quantum: int) -> None:
        """Take the audio facts every config carries: ``sources``, ``sample_rate``, ``audio_channels``."""
        self.config = config
        self.sources = tuple(config.sources)
        self.sample_rate = config.sample_rate
        self.audio_channels = config.audio_channels
        self.time_quantum = time_quantum

    def _adopt_from(self, model: SeparationModel) -> None:
        """Take the engine-facing facts of ``model``, which this model wraps (stems, rate, chunking, denoising)."""
        for attr in (
            "sources",
            "sample_rate",
            "audio_channels",
            "time_quantum",
            "default_segment",
            "default_overlap",
            "elastic_segment",
            "band_extension",
            "unordered_sources",
            "default_atten_lim",
        ):
            setattr(self, attr, getattr(model, attr))

    def describe(self) -> dict:
        """Facts for ``demixer models list`` and the service."""
        return {
            "sources": list(self.sources),
            "sample_rate": self.sample_rate,
            "audio_channels": self.audio_channels,
            "parameters": sum(p.numel() for p in self.parameters()),
        }


def are_speakers(sources: tuple[str, ...]) -> bool:
    """Stems named ``speaker1``, ``speaker2``, ...: outputs in no fixed order (see ``unordered_sources``)."""
    return len(sources) > 1 and all(re.fullmatch(r"speaker\d+", s) for s in sources)


def atten_gain(atten_lim: float | None) -> float | None:
    """``--atten-lim DB`` as the fraction of the noise kept, ``10^(-DB/20)``; ``None`` (or ``inf``): no limit."""
    return None if atten_lim is None or math.isinf(atten_lim) else float(10 ** (-atten_lim / 20))
