"""The input's band above a model's Nyquist frequency, given back to the stems.

A model that works below the input's rate (an 8 kHz speaker separator on a 16 or 44.1 kHz
recording) returns stems with nothing above its Nyquist frequency ``fm``. Instead of dropping that
band, the engine keeps it as a residual, ``x - up(down(x))``, and shares it among the stems sample by
sample, in proportion to each stem's short-time energy in the octave just below ``fm``: the stems keep
the input's full band and still sum to the input.

Everything is streamed (filter states carry over between blocks), so files of any length work in
flat memory, and the block sizes do not change the result.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, lfilter, sosfilt


class BandExtension:
    """Share a high-band residual among stems by their energy just below the model's Nyquist frequency.

    Args:
        model_rate: the rate the stems were made at (their band ends at ``model_rate / 2``).
        rate: the input's (and the stems') rate now.
        stems: the stem names, in the order given to :meth:`process`.
        channels: audio channels.
        smoothing_ms: time constant of the energy envelopes.

    Shape:
        :meth:`process`: ``residual [C, n]``, ``{stem: [C, n]}`` -> ``{stem: [C, n]}``.
    """

    def __init__(
        self, model_rate: int, rate: int, stems: tuple[str, ...], channels: int, smoothing_ms: float = 20.0
    ) -> None:
        nyquist = model_rate / 2
        self.sos = butter(4, [0.5 * nyquist, 0.95 * nyquist], btype="bandpass", fs=rate, output="sos")
        self.stems = tuple(stems)
        self.band_state = {s: np.zeros((self.sos.shape[0], channels, 2)) for s in self.stems}
        a = float(np.exp(-1000.0 / (smoothing_ms * rate)))
        self.env_b, self.env_a = np.array([1 - a]), np.array([1.0, -a])
        self.env_state = {s: np.zeros((channels, 1)) for s in self.stems}

    def process(self, residual: np.ndarray, stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        envelopes = {}
        for s in self.stems:
            band, self.band_state[s] = sosfilt(self.sos, stems[s], axis=-1, zi=self.band_state[s])
            envelopes[s], self.env_state[s] = lfilter(
                self.env_b, self.env_a, band * band, axis=-1, zi=self.env_state[s]
            )
        total = sum(envelopes.values())
        share = 1.0 / len(self.stems)  # where no stem has energy in the band: an even split
        quiet = total <= 1e-12
        return {
            s: (stems[s] + residual * np.where(quiet, share, envelopes[s] / np.where(quiet, 1.0, total))).astype(
                np.float32
            )
            for s in self.stems
        }


class HighBand:
    """The part of a signal a rate round trip loses, ``x - up(down(x))``, streamed.

    :meth:`process` takes each input block with its downsampled version (the engine makes that
    anyway) and returns the residual samples ready so far, in order; :meth:`flush` takes the
    downsampler's tail and returns the rest.
    """

    def __init__(self, rate: int, model_rate: int, channels: int) -> None:
        from ..audio.resample import StreamResampler

        self.up = StreamResampler(model_rate, rate, channels)
        self.pending = np.zeros((channels, 0), np.float32)  # input samples whose round trip is not out yet

    def _take(self, low: np.ndarray) -> np.ndarray:
        n = min(low.shape[1], self.pending.shape[1])
        out = self.pending[:, :n] - low[:, :n]
        self.pending = self.pending[:, n:]
        return out

    def process(self, block: np.ndarray, down: np.ndarray) -> np.ndarray:
        self.pending = np.concatenate([self.pending, block], axis=1)
        return self._take(self.up.process(down))

    def flush(self, down_tail: np.ndarray) -> np.ndarray:
        low = np.concatenate([self.up.process(down_tail), self.up.flush()], axis=1)
        out = self._take(low)
        rest = self.pending  # the round trip came out short: those samples keep all their signal
        self.pending = self.pending[:, :0]
        return np.concatenate([out, rest], axis=1)


def high_band(audio: np.ndarray, down: np.ndarray, rate: int, model_rate: int) -> np.ndarray:
    """Whole-array :class:`HighBand`: ``audio [C, T]`` at ``rate``, ``down`` its resampling to ``model_rate``."""
    from ..audio.resample import resample

    low = resample(down, model_rate, rate)[:, : audio.shape[1]]
    low = np.pad(low, ((0, 0), (0, audio.shape[1] - low.shape[1])))
    return (audio - low).astype(np.float32)
