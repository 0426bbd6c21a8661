"""Loudness (ITU-R BS.1770-4 / EBU R128) and true peak, streamed block by block, and a true-peak limiter.

The K-weighting filters are pyloudnorm's; the gating is BS.1770-4's as pyloudnorm implements it
(400 ms blocks every 100 ms, -70 LUFS absolute and -10 LU relative gates), so a 2-hour podcast is
measured in flat memory with the same result as ``pyloudnorm.Meter(rate).integrated_loudness`` on the
whole array. True peak is measured on the signal oversampled 4 times (BS.1770-4 Annex 2).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import minimum_filter1d
from scipy.signal import lfilter, resample_poly

OVERSAMPLING = 4
CONTEXT = 16  # samples each side that the 4x interpolation filter reaches (resample_poly's is 10)
CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs
BLOCK_S, STEP = 0.4, 0.25  # gating block and its step, as a fraction of the block
ABSOLUTE_GATE = -70.0


def to_db(linear: float) -> float:
    return float(20 * np.log10(linear)) if linear > 0 else float("-inf")


class LoudnessMeter:
    """Integrated loudness of a stream: :meth:`add` blocks, then :meth:`integrated`.

    Shape:
        :meth:`add`: ``[C, n]`` float, C ≤ 5.
    """

    def __init__(self, rate: int, channels: int) -> None:
        import pyloudnorm

        if channels > len(CHANNEL_WEIGHTS):
            raise ValueError(f"BS.1770 loudness takes at most {len(CHANNEL_WEIGHTS)} channels, got {channels}")
        self.rate, self.channels = rate, channels
        filters = pyloudnorm.Meter(rate)._filters.values()  # the K-weighting: high shelf, then high pass
        self.stages = [(f.passband_gain, np.asarray(f.b, float), np.asarray(f.a, float)) for f in filters]
        self.states = [np.zeros((channels, len(a) - 1)) for _, _, a in self.stages]
        self.weights = np.asarray(CHANNEL_WEIGHTS[:channels])
        self.samples = 0
        self.sub_sums: list[np.ndarray] = []  # per 100 ms sub-block: the filtered energy per channel
        self._open = np.zeros(channels)  # energy of the sub-block being filled

    def _edge(self, k: int) -> int:
        """First sample of sub-block ``k`` (pyloudnorm's own rounding)."""
        return int(BLOCK_S * (k * STEP) * self.rate)

    def add(self, block: np.ndarray) -> None:
        y = np.asarray(block, np.float64)
        for i, (gain, b, a) in enumerate(self.stages):
            y, self.states[i] = lfilter(b, a, y, axis=-1, zi=self.states[i])
            y = gain * y
        energy = y * y
        at = 0
        while at < energy.shape[1]:
            end = self._edge(len(self.sub_sums) + 1) - self.samples  # where the open sub-block closes
            take = min(end - at, energy.shape[1] - at)
            self._open += energy[:, at : at + take].sum(axis=1)
            at += take
            if at == end:
                self.sub_sums.append(self._open)
                self._open = np.zeros(self.channels)
        self.samples += energy.shape[1]

    def integrated(self) -> float:
        """Gated integrated loudness in LUFS (``-inf`` for silence or less than one 400 ms block)."""
        seconds = self.samples / self.rate
        blocks = int(np.round((seconds - BLOCK_S) / (BLOCK_S * STEP))) + 1
        per_block = int(round(1 / STEP))
        if blocks < 1 or len(self.sub_sums) < per_block:
            return float("-inf")
        subs = np.array(self.sub_sums)  # [K, C]
        blocks = min(blocks, len(subs) - per_block + 1)
        z = np.sum([subs[j : j + blocks] for j in range(per_block)], axis=0) / (BLOCK_S * self.rate)  # [blocks, C]
        with np.errstate(divide="ignore"):
            loudness = -0.691 + 10 * np.log10(z @ self.weights)
        above = loudness >= ABSOLUTE_GATE
        if not above.any():
            return float("-inf")
        relative = -0.691 + 10 * np.log10(z[above].mean(axis=0) @ self.weights) - 10.0
        kept = (loudness > relative) & above
        if not kept.any():
            return float("-inf")
        return float(-0.691 + 10 * np.log10(z[kept].mean(axis=0) @ self.weights))


def sample_peaks(padded: np.ndarray) -> np.ndarray:
    """The true peak around each sample: the largest oversampled value within half a sample of it,
    over all channels. ``padded [C, CONTEXT + n + CONTEXT]`` -> ``[n]``."""
    up = np.abs(resample_poly(padded, OVERSAMPLING, 1, axis=-1)).max(axis=0)
    n = padded.shape[1] - 2 * CONTEXT
    half = OVERSAMPLING // 2
    centre = OVERSAMPLING * (CONTEXT + np.arange(n))
    windows = centre[:, None] + np.arange(-half, half + 1)[None]
    return up[windows].max(axis=1)


class TruePeakMeter:
    """The true peak (4x oversampled) of a stream: :meth:`add` blocks, then read :meth:`dbtp`."""

    def __init__(self, channels: int) -> None:
        self.tail = np.zeros((channels, 2 * CONTEXT))
        self.peak = 0.0

    def add(self, block: np.ndarray) -> None:
        buf = np.concatenate([self.tail, np.asarray(block, np.float64)], axis=1)
        if buf.shape[1] > 2 * CONTEXT:
            self.peak = max(self.peak, float(sample_peaks(buf).max()))
            self.tail = buf[:, -2 * CONTEXT :]

    def dbtp(self) -> float:
        """True peak in dBTP, the stream's end included."""
        buf = np.concatenate([self.tail, np.zeros_like(self.tail)], axis=1)
        return to_db(max(self.peak, float(sample_peaks(buf).max())))


class TruePeakLimiter:
    """A look-ahead limiter on the true peak: no oversampled value of the output exceeds ``ceiling_db``.

    The gain each sample needs (ceiling / its true peak) is taken as the minimum over the next
    ``lookahead_ms``, may recover only as fast as ``release_ms`` allows, and is smoothed by a moving
    average over the look-ahead, so it is already down at every peak. All channels share one gain.
    The output is the input delayed by :attr:`latency` samples inside; :meth:`process` and
    :meth:`flush` together return exactly as many samples as went in, aligned with them.

    Shape:
        :meth:`process`: ``[C, n]`` -> ``[C, m]`` (m varies; the sum over calls equals the input's).
    """

    def __init__(
        self, rate: int, channels: int, ceiling_db: float, lookahead_ms: float = 5.0, release_ms: float = 80.0
    ) -> None:
        self.ceiling = 10 ** (ceiling_db / 20)
        self.look = max(1, int(round(rate * lookahead_ms / 1000)))
        self.decay = float(np.exp(-1.0 / max(rate * release_ms / 1000, 1.0)))
        self.past = np.zeros((channels, CONTEXT))  # samples already given out, for the interpolation's reach
        self.pending = np.zeros((channels, 0))
        self.recent = np.ones(self.look - 1)  # the last gains after release, for the moving average
        self.reduction = 0.0  # 1 - gain of the last sample (the release recursion's state)
        self.received = self.given = 0
        self.min_gain = 1.0

    @property
    def latency(self) -> int:
        return CONTEXT + self.look - 1

    def _release(self, hold: np.ndarray) -> np.ndarray:
        """``r[n] = min(hold[n], 1 - (1 - r[n-1]) * decay)``, vectorised: the reduction ``1 - r`` is a
        running maximum of ``1 - hold`` decaying geometrically, computed as a cumulative max in logs."""
        la = np.log(self.decay)
        n = np.arange(len(hold))
        with np.errstate(divide="ignore"):
            wanted = np.log(np.maximum(1.0 - hold, 0.0)) - n * la
            start = np.log(self.reduction) + la if self.reduction > 0 else -np.inf  # r[-1]'s decay to n = 0
        reduction = np.exp(np.maximum(np.maximum.accumulate(wanted), start) + n * la)
        self.reduction = float(reduction[-1])
        return 1.0 - reduction

    def process(self, block: np.ndarray) -> np.ndarray:
        self.received += block.shape[1]
        self.pending = np.concatenate([self.pending, np.asarray(block, np.float64)], axis=1)
        ready = self.pending.shape[1] - CONTEXT - self.look + 1  # samples with all the future they need
        if ready <= 0:
            return self.pending[:, :0].astype(np.float32)
        peaks = sample_peaks(np.concatenate([self.past, self.pending], axis=1))  # [pending - CONTEXT]
        needed = np.minimum(1.0, self.ceiling / np.maximum(peaks, 1e-12))
        hold = minimum_filter1d(needed, self.look, origin=-(self.look // 2))[:ready]  # min over the next `look`
        released = self._release(hold)
        smooth = np.concatenate([self.recent, released])
        cums = np.concatenate([[0.0], np.cumsum(smooth)])
        gain = (cums[self.look :] - cums[: -self.look]) / self.look  # mean of each sample's last `look` gains
        self.recent = smooth[len(smooth) - (self.look - 1) :] if self.look > 1 else smooth[:0]
        out = self.pending[:, :ready] * gain[None]
        self.min_gain = min(self.min_gain, float(gain.min()))
        self.past = np.concatenate([self.past, self.pending[:, :ready]], axis=1)[:, -CONTEXT:]
        self.pending = self.pending[:, ready:]
        self.given += ready
        return out.astype(np.float32)

    def flush(self) -> np.ndarray:
        """The rest of the stream (the look-ahead is filled with silence)."""
        missing = self.received - self.given
        tail = self.process(np.zeros((self.pending.shape[0], CONTEXT + self.look)))
        self.received -= CONTEXT + self.look
        return tail[:, :missing]
