"""Sample-rate conversion with soxr, whole-array or streaming."""

from __future__ import annotations

import numpy as np
import soxr


def resample(audio: np.ndarray, orig_sr: float, target_sr: float, quality: str = "HQ") -> np.ndarray:
    """Resample a whole signal (rates need not be whole numbers).

    Shape: ``[channels, frames]`` -> ``[channels, frames']``.
    """
    if orig_sr == target_sr:
        return audio
    out = soxr.resample(np.ascontiguousarray(audio.T), orig_sr, target_sr, quality=quality)
    return np.ascontiguousarray(np.atleast_2d(out.T) if out.ndim == 1 else out.T, dtype=np.float32)


class StreamResampler:
    """Block-by-block resampler; with ``total_out`` its output has exactly that many frames.

    soxr's stream keeps the filter state between blocks, so the result equals whole-array
    resampling apart from float rounding. Feed blocks with :meth:`process`, then call
    :meth:`flush` once.

    Shape:
        blocks in and out: ``[channels, n]``.
    """

    def __init__(
        self, orig_sr: int, target_sr: int, channels: int, total_out: int | None = None, quality: str = "HQ"
    ) -> None:
        self.orig_sr, self.target_sr, self.channels = int(orig_sr), int(target_sr), int(channels)
        self.identity = self.orig_sr == self.target_sr
        self._stream = (
            None
            if self.identity
            else soxr.ResampleStream(self.orig_sr, self.target_sr, self.channels, dtype="float32", quality=quality)
        )
        self.total_out = total_out
        self.produced = 0

    def _limit(self, out: np.ndarray) -> np.ndarray:
        if self.total_out is not None:
            out = out[:, : max(0, self.total_out - self.produced)]
        self.produced += out.shape[1]
        return out

    def process(self, block: np.ndarray) -> np.ndarray:
        if self._stream is None:
            return self._limit(block)
        out = self._stream.resample_chunk(np.ascontiguousarray(block.T, dtype=np.float32), last=False)
        return self._limit(np.ascontiguousarray(out.T))

    def flush(self) -> np.ndarray:
        if self._stream is None:
            tail = np.zeros((self.channels, 0), np.float32)
        else:
            out = self._stream.resample_chunk(np.zeros((0, self.channels), np.float32), last=True)
            tail = np.ascontiguousarray(out.T)
        tail = self._limit(tail)
        if self.total_out is not None and self.produced < self.total_out:
            pad = np.zeros((self.channels, self.total_out - self.produced), np.float32)
            self.produced = self.total_out
            tail = np.concatenate([tail, pad], axis=1)
        return tail
