"""Reference-free quality signals of a separation: what can be checked in production, where no
reference exists.

For the stems of one mixture:

- ``consistency_db``: how well the stems add up to the mixture, ``10 log10(|x|² / |x - Σ s_j|²)``
  (high is good; a model that drops or invents energy scores low);
- per stem: ``energy_db`` (RMS, dBFS), ``silence_ratio`` (share of 100 ms frames under -60 dBFS),
  ``clipped`` (samples at full scale), ``peak``;
- ``leakage``: the largest cosine similarity between the stem's magnitude spectrogram and another
  stem's (0: disjoint time-frequency content, 1: the same content in both: under-separation);
- ``artifacts``: the energy-weighted frame-to-frame level change of the stem's spectrum in dB
  (flickering masks, "musical noise", raise it; percussive stems are high by nature, so compare
  a stem with the same stem of another separation, not with other stems);
- ``profile``: how much the stem looks like its name says, for known names (``vocals``,
  ``drums``, ``bass``, ``speech``; 0..1): low-frequency share for bass, percussiveness for drums,
  voice-band share for vocals/speech; swapped or mislabelled stems score low;
- ``mask_confidence``: from the ratio masks the stems imply, the mixture-energy-weighted mean of
  the largest mask per bin (1: every bin clearly belongs to one stem; 1/J: undecided), and
  ``uncertain_share``, the energy share of bins whose largest mask is under 0.6;
- per stem, from the shipped quality estimator (:mod:`demixer.estimator`), which learned them from separations
  with known references: ``predicted_sdr`` (dB, whole track), ``predicted_sdr_per_second``,
  ``silent_source_probability`` (per second), ``weak_seconds`` / ``absent_seconds`` (``[start, end]`` ranges
  where the prediction is under 0 dB / the source is probably silent), ``probably_absent`` and a one-line
  ``verdict``;
- for speech stems (``speech``, ``target``, ``speaker1``...): ``dnsmos``, DNSMOS P.835 ``sig``/``bak``/``ovrl``
  of the stem (:mod:`demixer.evaluation.dnsmos`), and ``dnsmos_change``, the stem's scores minus the mixture's
  (top level: ``mixture_dnsmos``), so a user sees whether the separation helped or hurt the speech as
  listeners would rate it. Without the ``eval`` extra they are left out and ``dnsmos_unavailable`` says why.

Time-frequency signals are computed on at most ``max_seconds`` of audio (evenly spaced excerpts)
at most at :data:`ANALYSIS_RATE` (higher rates are resampled for them), so their cost does not grow
with the track's length or rate; the per-sample signals are summed block by block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..audio.resample import resample
from ..errors import ModelNotFoundError
from ..estimator.features import WindowFeaturizer, percussive_share
from ..extras import missing_modules
from ..transforms import STFT

_EPS = 1e-12
PROFILES = ("vocals", "drums", "bass", "speech")
SPEECH_STEM = re.compile(r"speech|target|speaker\d+")  # stems DNSMOS rates


ANALYSIS_RATE = 48000  # the highest rate the time-frequency signals look at


def _excerpt_ranges(total: int, sample_rate: int, max_seconds: float, pieces: int = 6) -> list[tuple[int, int]]:
    """``(start, size)`` of the at most ``max_seconds`` of ``total`` samples the time-frequency signals read:
    ``pieces`` evenly spaced excerpts (the whole signal when it is short enough)."""
    keep = int(max_seconds * sample_rate)
    if total <= keep:
        return [(0, total)]
    size = keep // pieces
    return [(int(s), size) for s in np.linspace(0, total - size, pieces).astype(int)]


def _power_spectrogram(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono power spectrogram with ~46 ms frames: the mean of the channels' powers, one channel at a time
    (memory: one channel's spectrogram). Shape: ``[C, T]`` -> ``[F, N]``."""
    n_fft = 1 << int(np.round(np.log2(0.046 * sample_rate)))
    stft = STFT(n_fft, n_fft // 4)
    x = np.atleast_2d(x)
    total = None
    for channel in x:
        spec = stft(torch.from_numpy(np.ascontiguousarray(channel, dtype=np.float32)))
        power = (spec.real.square() + spec.imag.square()).numpy().astype(np.float64)
        total = power if total is None else total + power
    return total / x.shape[0]


@dataclass
class _StemStats:
    """What one stem's per-sample signals need, summed over the blocks of the track."""

    energy: float = 0.0
    clipped: int = 0
    peak: float = 0.0
    frames: list[np.ndarray] = field(default_factory=list)  # 100 ms frame levels (dB), block by block

    def mean_square(self, samples: int) -> float:
        return self.energy / max(1, samples)

    def levels(self, samples: int) -> np.ndarray:
        return (
            np.concatenate(self.frames) if self.frames else np.array([10 * np.log10(self.mean_square(samples) + _EPS)])
        )


class QualityAccumulator:
    """The quality signals of one separation, fed block by block (memory: a block, the 60 s excerpts and
    their spectrograms, whatever the track's length). :func:`quality_signals` feeds it whole arrays;
    :mod:`demixer.evaluation.analysis` feeds it files.

    Blocks come in order, aligned across the mixture and the stems, each (but the last) a multiple of
    :attr:`block` samples. Shape of a block: ``[C, n]``.
    """

    def __init__(self, names: list[str], length: int, channels: int, sample_rate: int, max_seconds: float = 60.0):
        self.names, self.length, self.channels, self.sample_rate = names, length, channels, sample_rate
        self.hop = max(1, int(0.1 * sample_rate))
        self.block = max(self.hop, int(10.0 * sample_rate) // self.hop * self.hop)  # whole 100 ms frames
        self.ranges = _excerpt_ranges(length, sample_rate, max_seconds)
        size = sum(n for _, n in self.ranges)
        self.excerpts = {k: np.zeros((channels, size), np.float32) for k in ["mixture", *names]}
        self.mix_energy = self.residual_energy = 0.0
        self.stats = {k: _StemStats() for k in names}
        self.windows = WindowFeaturizer(names, sample_rate)  # the quality estimator's input, over the whole track
        self._offset = 0

    def add(self, mix: np.ndarray, stems: Mapping[str, np.ndarray]) -> None:
        lo, hi = self._offset, self._offset + mix.shape[-1]
        m = np.asarray(mix, dtype=np.float64)
        residual = m.copy()
        for k in self.names:
            block = np.asarray(stems[k], dtype=np.float64)
            residual -= block
            s = self.stats[k]
            s.energy += float(np.sum(block**2))
            s.clipped += int(np.sum(np.abs(block) >= 0.999))
            s.peak = max(s.peak, float(np.abs(block).max(initial=0.0)))
            whole = block.shape[-1] // self.hop * self.hop  # whole frames only, cut as one pass over the track would
            if self.length >= self.hop and whole:
                s.frames.append(_frame_rms_db(block[..., :whole], self.sample_rate))
        self.mix_energy += float(np.sum(m**2))
        self.residual_energy += float(np.sum(residual**2))
        self.windows.add(mix, stems)
        at = 0  # where each excerpt piece goes in the joined excerpt
        for start, size in self.ranges:
            a, b = max(start, lo), min(start + size, hi)
            if b > a:
                for k, x in (("mixture", mix), *((k, stems[k]) for k in self.names)):
                    self.excerpts[k][:, at + a - start : at + b - start] = x[..., a - lo : b - lo]
            at += size
        self._offset = hi

    def result(self) -> dict[str, Any]:
        """The signals (see :func:`quality_signals`), once every block was added."""
        rate = min(self.sample_rate, ANALYSIS_RATE)

        def power(k: str) -> np.ndarray:  # the excerpt is dropped once its spectrogram exists
            x = self.excerpts.pop(k)
            if self.sample_rate > ANALYSIS_RATE:
                x = np.stack([resample(c[None], self.sample_rate, ANALYSIS_RATE)[0] for c in x])
            return _power_spectrogram(x, rate)

        speech = self._dnsmos()  # before the excerpts give way to their spectrograms
        consistency = 10 * np.log10((self.mix_energy + _EPS) / (self.residual_energy + _EPS))
        weight = power("mixture")
        powers = {k: power(k) for k in self.names}
        mags = {k: np.sqrt(p) for k, p in powers.items()}
        norms = {k: np.sqrt((m**2).sum()) + _EPS for k, m in mags.items()}
        samples = self.length * self.channels
        out_stems: dict[str, dict[str, Any]] = {}
        for k in self.names:
            others = [float((mags[k] * mags[o]).sum() / (norms[k] * norms[o])) for o in self.names if o != k]
            s = self.stats[k]
            out_stems[k] = {
                "energy_db": round(float(10 * np.log10(s.mean_square(samples) + _EPS)), 2),
                "silence_ratio": round(float(np.mean(s.levels(samples) < -60)), 4),
                "clipped": s.clipped,
                "peak": round(s.peak, 4),
                "leakage": round(max(others), 4) if others else 0.0,
                "artifacts": round(_flux_db(powers[k]), 3),
                "profile": None if (p := _profile(k, powers[k], rate)) is None else round(p, 4),
            }
        stack = np.stack([mags[k] for k in self.names])  # [J, F, N]
        implied = stack / (stack.sum(0, keepdims=True) + _EPS)
        top = implied.max(0)
        confidence = float((top * weight).sum() / (weight.sum() + _EPS))
        uncertain = float(weight[top < 0.6].sum() / (weight.sum() + _EPS))
        predicted = self._predicted()
        for k, entry in predicted.get("stems", {}).items():
            out_stems[k].update(entry)
        for k, scores in speech.get("stems", {}).items():
            out_stems[k]["dnsmos"] = scores
            if scores is not None:
                before = speech["mixture_dnsmos"]
                out_stems[k]["dnsmos_change"] = {m: round(scores[m] - before[m], 3) for m in scores}
        return {
            "consistency_db": round(float(min(consistency, 200.0)), 2),
            "mask_confidence": round(confidence, 4),
            "uncertain_share": round(uncertain, 4),
            **{k: v for k, v in speech.items() if k != "stems"},
            **{k: v for k, v in predicted.items() if k != "stems"},
            "stems": out_stems,
        }

    def _predicted(self) -> dict[str, Any]:
        """The quality estimator's predictions per stem (``stems``) and its name, or why there are none."""
        from ..estimator.predict import NAME, estimate

        features, energy = self.windows.finish()
        try:
            return {"quality_estimator": NAME, "stems": estimate(features, energy)}
        except ModelNotFoundError as exc:
            return {"quality_estimator_unavailable": str(exc)}

    def _dnsmos(self) -> dict[str, Any]:
        """DNSMOS of the mixture and of each speech stem, on the excerpts (empty without speech stems)."""
        names = [k for k in self.names if SPEECH_STEM.fullmatch(k)]
        if not names:
            return {}
        missing = missing_modules("eval")
        if missing:
            return {"dnsmos_unavailable": f"pip install 'demixer[eval]' (missing: {', '.join(missing)})"}
        from .dnsmos import dnsmos

        def score(k: str) -> dict[str, float] | None:
            x = self.excerpts[k]
            return dnsmos(x, self.sample_rate) if np.any(x) else None  # a silent stem has no speech to rate

        mixture = score("mixture")
        if mixture is None:
            return {}
        return {"mixture_dnsmos": mixture, "stems": {k: score(k) for k in names}}


def _band_share(power: np.ndarray, sample_rate: int, lo: float, hi: float) -> float:
    freqs = np.linspace(0, sample_rate / 2, power.shape[0])
    band = (freqs >= lo) & (freqs < hi)
    return float(power[band].sum() / (power.sum() + _EPS))


def _profile(name: str, power: np.ndarray, sample_rate: int) -> float | None:
    low = _band_share(power, sample_rate, 0, 250)
    if name == "bass":
        return low
    if name == "drums":
        return percussive_share(power.T, time_size=17, freq_size=17, eps=_EPS)
    if name in ("vocals", "speech"):
        percussive = percussive_share(power.T, time_size=17, freq_size=17, eps=_EPS)
        return _band_share(power, sample_rate, 250, 4000) * (1 - percussive)
    return None


def _flux_db(power: np.ndarray) -> float:
    """Energy-weighted mean frame-to-frame change of the log spectrum, in dB.

    Flickering masks ("musical noise") make a bin's level jump from frame to frame; each pair of
    frames is weighted by its weaker bin, so silence and onsets of loud notes weigh little.
    """
    level = 10 * np.log10(power + _EPS)
    jump = np.abs(np.diff(level, axis=1))
    weight = np.minimum(power[:, 1:], power[:, :-1])
    return float((jump * weight).sum() / (weight.sum() + _EPS))


def _frame_rms_db(x: np.ndarray, sample_rate: int) -> np.ndarray:
    hop = max(1, int(0.1 * sample_rate))
    n = x.shape[-1] // hop
    if n == 0:
        return np.array([10 * np.log10(np.mean(x**2) + _EPS)])
    frames = x[..., : n * hop].reshape(*x.shape[:-1], n, hop)
    return 10 * np.log10(np.mean(frames**2, axis=tuple(range(frames.ndim - 2)) + (-1,)) + _EPS)


def quality_signals(
    mixture: np.ndarray | torch.Tensor,
    stems: Mapping[str, np.ndarray | torch.Tensor],
    sample_rate: int,
    max_seconds: float = 60.0,
) -> dict[str, Any]:
    """Reference-free signals for one separation (see the module docstring).

    Shape: ``mixture [C, T]``, each stem ``[C, T]`` (same rate and length).

    Returns:
        ``{"consistency_db": float, "mask_confidence": float, "uncertain_share": float,
        "stems": {name: {"energy_db", "silence_ratio", "clipped", "peak", "leakage", "artifacts", "profile"}}}``.
    """
    mix = np.asarray(mixture.detach().cpu() if hasattr(mixture, "detach") else mixture)  # no copy of arrays
    arrays = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for k, v in stems.items()}
    n = min([mix.shape[-1], *(a.shape[-1] for a in arrays.values())])
    mix = np.atleast_2d(mix)
    acc = QualityAccumulator(list(arrays), n, mix.shape[0], sample_rate, max_seconds)
    for lo in range(0, n, acc.block):
        hi = min(lo + acc.block, n)
        acc.add(mix[..., lo:hi], {k: np.atleast_2d(a)[..., lo:hi] for k, a in arrays.items()})
    return acc.result()
