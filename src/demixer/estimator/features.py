"""What the quality estimator sees of a stem: one feature vector per second, computed without a reference.

A track is cut into 1 s windows from its start (a last piece of at least half a second counts as a window).
Within a window the power spectra of the mixture ``x``, the stem ``e``, its complement ``x - e`` and the residual
of all the stems ``x - Σ s_j`` are averaged over Hann frames (~46 ms, half overlap) and pooled into
:data:`BANDS` mel bands from 30 Hz to 16 kHz (bands above a signal's Nyquist frequency read as silence). From
them, per window (see :data:`FEATURES`):

- the stem's and its complement's level per band relative to the mixture's, and the mixture's own level;
- the stem's, its complement's and the mixture's overall levels, and how well all stems add up to the mixture;
- how much the stem's band spectrum looks like another stem's (cosine), how its frame levels follow the
  mixture's, how much they flicker, and the share of its frames that are silent;
- the report's stem profiles: its low-frequency and voice-band shares, and the percussive share of it and of the
  mixture.

The same windows cut the reference in :func:`window_sdr`, the estimator's training target. Memory: one window
of each signal (:class:`WindowFeaturizer` is fed blocks of any size).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import sparse
from scipy.ndimage import median_filter

BANDS = 32
LOW_HZ, HIGH_HZ = 30.0, 16000.0
_FLOOR_DB = -120.0
_EPS = 10 ** (_FLOOR_DB / 10)
SILENT_DBFS = -55.0  # a window whose reference is quieter than this holds no source

SCALARS = (
    "stem_db",  # the stem's level, dBFS
    "stem_re_mix_db",  # the stem's level relative to the mixture's
    "rest_re_mix_db",  # the level of mixture - stem relative to the mixture's
    "mix_db",  # the mixture's level, dBFS
    "consistency_db",  # mixture over (mixture - all stems), as the report's consistency
    "other_stem_similarity",  # the largest cosine between the stem's band spectrum and another stem's
    "envelope_correlation",  # of the stem's and the mixture's frame levels
    "flicker_db",  # energy-weighted frame-to-frame change of the stem's band levels
    "silent_frames",  # share of the stem's frames under -60 dBFS
    "low_share",  # the stem's energy share under 250 Hz (the report's bass profile)
    "voice_share",  # its share from 250 Hz to 4 kHz (the vocals/speech profile)
    "percussive_share",  # its percussive share, median-filtering HPSS on the band frames (the drums profile)
    "mix_percussive_share",  # the same for the mixture
)
FEATURES = BANDS * 3 + len(SCALARS)  # stem re mixture per band, rest re mixture per band, mixture per band


def _db(power: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(power, _EPS))


def frame_size(sample_rate: int) -> int:
    """Frames of about 46 ms: 2048 samples at 44.1 kHz, 1024 at 22.05 kHz, 512 at 11.025 kHz."""
    return 1 << int(np.round(np.log2(0.046 * sample_rate)))


def mel_filterbank(sample_rate: int, n_fft: int) -> np.ndarray:
    """``[BANDS, n_fft // 2 + 1]`` triangular mel filters, each normalised to sum 1 (a band's power is the mean
    power of its bins). Bands that lie above the Nyquist frequency are all zero."""

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 2595 * np.log10(1 + np.asarray(f) / 700)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700 * (10 ** (m / 2595) - 1)

    edges = hz(np.linspace(mel(LOW_HZ), mel(HIGH_HZ), BANDS + 2))
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    bank = np.zeros((BANDS, freqs.size))
    for b in range(BANDS):
        lo, mid, hi = edges[b : b + 3]
        rise = (freqs - lo) / (mid - lo)
        fall = (hi - freqs) / (hi - mid)
        bank[b] = np.clip(np.minimum(rise, fall), 0, None)
        if not bank[b].any() and mid < sample_rate / 2:  # a band narrower than a bin: its nearest bin
            bank[b, np.argmin(np.abs(freqs - mid))] = 1.0
    sums = bank.sum(1, keepdims=True)
    return np.divide(bank, sums, out=np.zeros_like(bank), where=sums > 0)


def mel_centres() -> np.ndarray:
    """The centre frequency of each of the :data:`BANDS` bands, Hz."""
    mel = np.linspace(2595 * np.log10(1 + LOW_HZ / 700), 2595 * np.log10(1 + HIGH_HZ / 700), BANDS + 2)[1:-1]
    return 700 * (10 ** (mel / 2595) - 1)


def percussive_share(power: np.ndarray, time_size: int, freq_size: int, eps: float = 1e-20) -> float:
    """Energy share of the percussive part of ``[frames, bins]`` powers, by FitzGerald's median-filtering HPSS (2010):
    a median along time keeps the harmonic part, one along frequency the percussive."""
    mag = np.sqrt(power)
    harmonic = median_filter(mag, size=(time_size, 1), mode="nearest")
    percussive = median_filter(mag, size=(1, freq_size), mode="nearest")
    mask = percussive**2 / (percussive**2 + harmonic**2 + eps)
    return float((mask * power).sum() / (power.sum() + eps))


def window_bounds(length: int, sample_rate: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each 1 s window of ``length`` samples; a last piece of at least 0.5 s is a window."""
    bounds = [(lo, lo + sample_rate) for lo in range(0, length - sample_rate + 1, sample_rate)]
    done = bounds[-1][1] if bounds else 0
    if length - done >= sample_rate // 2:
        bounds.append((done, length))
    return bounds


def window_sdr(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per 1 s window: the SDR of ``estimate`` against ``reference`` in dB (``10 log10(|s|² / |s - ŝ|²)``, all
    channels together) and whether the reference is silent there (under :data:`SILENT_DBFS`). Shape:
    ``[C, T]`` each -> ``([W], [W])``."""
    s, e = np.atleast_2d(reference).astype(np.float64), np.atleast_2d(estimate).astype(np.float64)
    sdr, silent = [], []
    for lo, hi in window_bounds(s.shape[-1], sample_rate):
        target = float(np.sum(s[:, lo:hi] ** 2))
        error = float(np.sum((s[:, lo:hi] - e[:, lo:hi]) ** 2))
        sdr.append(10 * np.log10((target + 1e-9) / (error + 1e-9)))
        silent.append(10 * np.log10(target / s[:, lo:hi].size + 1e-20) < SILENT_DBFS)
    return np.asarray(sdr), np.asarray(silent)


def track_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """SDR over the whole signal in dB, ``10 log10(|s|² / |s - ŝ|²)``; ``nan`` when the reference is silent."""
    s, e = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    target = float(np.sum(s**2))
    if 10 * np.log10(target / max(1, s.size) + 1e-20) < SILENT_DBFS:
        return float("nan")
    return float(10 * np.log10(target / (float(np.sum((s - e) ** 2)) + 1e-9)))


class WindowFeaturizer:
    """Per-window features of each stem (see the module docstring), fed aligned blocks ``[C, n]`` of the mixture
    and the stems in order; :meth:`finish` returns ``{stem: [W, FEATURES]}`` and each window's stem energy."""

    def __init__(self, names: list[str], sample_rate: int):
        self.names, self.sample_rate = list(names), sample_rate
        self.n_fft = frame_size(sample_rate)
        self.hop = self.n_fft // 2
        centres = mel_centres()
        self.low, self.voice = centres < 250, (centres >= 250) & (centres < 4000)
        self.bank = sparse.csr_matrix(mel_filterbank(sample_rate, self.n_fft).astype(np.float32))  # no BLAS threads
        self.window = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)
        # one-sided bin powers of a Hann frame sum to the frame's mean square (Parseval; Hann's mean square is 3/8)
        self._scale = np.float32(np.sqrt(2 / (self.n_fft**2 * 0.375)))
        self._carry: dict[str, np.ndarray] | None = None
        self._rows: dict[str, list[np.ndarray]] = {k: [] for k in self.names}
        self._energy: dict[str, list[float]] = {k: [] for k in self.names}

    def add(self, mix: np.ndarray, stems: Mapping[str, np.ndarray]) -> None:
        blocks = {"mixture": np.atleast_2d(mix), **{k: np.atleast_2d(stems[k]) for k in self.names}}
        if self._carry is not None:
            blocks = {k: np.concatenate([self._carry[k], b], axis=-1) for k, b in blocks.items()}
        n = blocks["mixture"].shape[-1]
        whole = n // self.sample_rate * self.sample_rate
        for lo in range(0, whole, self.sample_rate):
            self._window({k: b[:, lo : lo + self.sample_rate] for k, b in blocks.items()})
        self._carry = {k: b[:, whole:].copy() for k, b in blocks.items()}

    def finish(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``({stem: [W, FEATURES] float32}, {stem: [W] mean square of the stem per window})``."""
        if self._carry is not None and self._carry["mixture"].shape[-1] >= self.sample_rate // 2:
            self._window(self._carry)
        self._carry = None
        features = {k: np.asarray(v, np.float32).reshape(-1, FEATURES) for k, v in self._rows.items()}
        return features, {k: np.asarray(v) for k, v in self._energy.items()}

    def _spectra(self, x: np.ndarray) -> np.ndarray:
        """Complex spectra of the window's Hann frames, ``[C, frames, n_fft // 2 + 1]``, scaled so that a frame's
        bin powers sum to its mean square."""
        x = np.asarray(x, np.float32)
        if x.shape[-1] < self.n_fft:
            x = np.pad(x, ((0, 0), (0, self.n_fft - x.shape[-1])))
        starts = range(0, x.shape[-1] - self.n_fft + 1, self.hop)
        frames = np.stack([x[:, s : s + self.n_fft] for s in starts], axis=1) * self.window
        return np.fft.rfft(frames, axis=-1) * self._scale

    def _bands(self, spec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean band power over the window ``[BANDS]``, each frame's level in dB ``[frames]`` and each frame's
        band powers ``[frames, BANDS]`` (channels averaged)."""
        power = (spec.real**2 + spec.imag**2).mean(0)  # [frames, bins]
        bands = (self.bank @ power.T).T
        return bands.mean(0), _db(power.sum(1)), bands

    def _window(self, blocks: dict[str, np.ndarray]) -> None:
        x = blocks["mixture"]
        spectra = {k: self._spectra(b) for k, b in blocks.items()}
        mix_spec = spectra.pop("mixture")
        px, x_frames, x_bands = self._bands(mix_spec)
        mix_percussive = percussive_share(x_bands, time_size=9, freq_size=7)
        pres, _, _ = self._bands(mix_spec - sum(spectra.values()))
        mix_db = float(_db(np.array(np.mean(np.square(x, dtype=np.float64)))))
        bands = {k: self._bands(spec) for k, spec in spectra.items()}
        for k in self.names:
            e = np.asarray(blocks[k], np.float64)
            pe, e_frames, e_bands = bands[k]
            pr, _, _ = self._bands(mix_spec - spectra[k])
            e_ms, rest_ms = float(np.mean(e**2)), float(np.mean((x - e) ** 2))
            others = [_cosine(np.sqrt(pe), np.sqrt(bands[o][0])) for o in self.names if o != k]
            level = _db(e_bands)
            jump = np.abs(np.diff(level, axis=0))
            weight = np.minimum(e_bands[1:], e_bands[:-1])
            flicker = float((jump * weight).sum() / (weight.sum() + 1e-20)) if len(level) > 1 else 0.0
            varied = len(e_frames) > 2 and np.std(e_frames) > 1e-3 and np.std(x_frames) > 1e-3  # dB
            corr = np.corrcoef(e_frames, x_frames)[0, 1] if varied else 0.0
            stem_db, rest_db = float(_db(np.array(e_ms))), float(_db(np.array(rest_ms)))
            scalars = [
                stem_db / 50,
                float(np.clip(stem_db - mix_db, -60, 20)) / 20,
                float(np.clip(rest_db - mix_db, -60, 20)) / 20,
                mix_db / 50,
                float(np.clip(float(_db(px.sum()) - _db(pres.sum())), -20, 60)) / 20,
                max(others, default=0.0),
                float(np.nan_to_num(corr)),
                min(flicker, 30.0) / 10,
                float(np.mean(e_frames < -60)),
                float(pe[self.low].sum() / (pe.sum() + 1e-20)),
                float(pe[self.voice].sum() / (pe.sum() + 1e-20)),
                percussive_share(e_bands, time_size=9, freq_size=7),
                mix_percussive,
            ]
            row = np.concatenate(
                [
                    np.clip(_db(pe) - _db(px), -60, 20) / 20,
                    np.clip(_db(pr) - _db(px), -60, 20) / 20,
                    np.clip(_db(px), -100, 0) / 50,
                    scalars,
                ]
            )
            self._rows[k].append(row)
            self._energy[k].append(e_ms)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / ((np.linalg.norm(a) + 1e-12) * (np.linalg.norm(b) + 1e-12)))


def window_features(
    mixture: np.ndarray, stems: Mapping[str, np.ndarray], sample_rate: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:class:`WindowFeaturizer` on whole arrays ``[C, T]``."""
    featurizer = WindowFeaturizer(list(stems), sample_rate)
    mix = np.atleast_2d(mixture)
    block = 10 * sample_rate
    for lo in range(0, mix.shape[-1], block):
        featurizer.add(mix[:, lo : lo + block], {k: np.atleast_2d(v)[:, lo : lo + block] for k, v in stems.items()})
    return featurizer.finish()
