"""Writing audio files block by block, atomically.

A writer writes to a hidden temporary file in the target folder and renames it into place
on :meth:`AudioWriter.commit`; if anything fails first, the temporary file is removed, so a
failed run never leaves a partial output behind.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError
from ..files import temp_prefix


@dataclass(frozen=True)
class OutputFormat:
    """Container and sample encoding of output files.

    ``encoding`` is ``"int16"``, ``"int24"`` or ``"float32"``; mp3 ignores it.
    """

    container: str = "wav"  # wav | flac | mp3
    encoding: str = "int16"
    mp3_bitrate: int = 320

    def __post_init__(self) -> None:
        if self.container not in ("wav", "flac", "mp3"):
            raise ValueError(f"unknown output container {self.container!r}")
        if self.encoding not in ("int16", "int24", "float32"):
            raise ValueError(f"unknown sample encoding {self.encoding!r}")
        if self.container == "flac" and self.encoding == "float32":
            raise ValueError("FLAC cannot store float32 samples: use --int24 or wav --float32")
        if self.container == "mp3" and not 32 <= self.mp3_bitrate <= 320:
            raise ValueError(f"mp3 bitrate must be between 32 and 320 kb/s, got {self.mp3_bitrate}")

    @property
    def extension(self) -> str:
        return self.container

    @property
    def is_float(self) -> bool:
        return self.container == "wav" and self.encoding == "float32"


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with writer threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


_SUBTYPES = {"int16": "PCM_16", "int24": "PCM_24", "float32": "FLOAT"}
_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile's SFC_SET_ADD_PEAK_CHUNK


def _no_peak_chunk(f: sf.SoundFile) -> None:
    """Leave out the PEAK chunk libsndfile adds to float WAV files: it holds the time of writing, so the same
    audio written twice would differ in its bytes (and in its SHA-256, which provenance records compare)."""
    from soundfile import _ffi, _snd

    _snd.sf_command(f._file, _SET_ADD_PEAK_CHUNK, _ffi.NULL, 0)


class AudioWriter:
    """Streaming, atomic audio file writer.

    Examples:
        >>> with AudioWriter("out.wav", 44100, 2) as w:   # doctest: +SKIP
        ...     w.write(block)          # block: [channels, n] float32
        ...     w.commit()              # without commit, nothing appears at out.wav

    Shape:
        ``write(block)``: ``[channels, n]``.
    """

    def __init__(
        self, path: str | os.PathLike[str], sample_rate: int, channels: int, fmt: OutputFormat = OutputFormat()
    ) -> None:
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.fmt = fmt
        self.frames = 0
        self._committed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(self.path), suffix=".part", dir=self.path.parent)
        os.close(fd)
        self.tmp_path = Path(tmp)
        try:
            if fmt.container == "mp3":
                self._open_mp3()
            else:
                self._sf = sf.SoundFile(
                    str(self.tmp_path),
                    "w",
                    samplerate=self.sample_rate,
                    channels=self.channels,
                    subtype=_SUBTYPES[fmt.encoding],
                    format=fmt.container.upper(),
                )
                if fmt.encoding == "float32":
                    _no_peak_chunk(self._sf)
        except Exception as exc:
            self.tmp_path.unlink(missing_ok=True)
            raise AudioError(self.path, f"cannot write: {exc}") from None

    # -- mp3 through PyAV (exact bitrate control) --------------------------------
    def _open_mp3(self) -> None:
        import av

        self._sf = None
        self._container = av.open(str(self.tmp_path), "w", format="mp3")
        layout = "mono" if self.channels == 1 else "stereo"
        if self.channels > 2:
            raise AudioError(self.path, "mp3 holds at most 2 channels: use wav or flac for multichannel audio")
        self._stream = self._container.add_stream("libmp3lame", rate=self.sample_rate, layout=layout)
        self._stream.bit_rate = self.fmt.mp3_bitrate * 1000

    def _write_mp3(self, block: np.ndarray) -> None:
        import av

        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(block, dtype=np.float32),
            format="fltp",
            layout="mono" if self.channels == 1 else "stereo",
        )
        frame.sample_rate = self.sample_rate
        frame.pts = self.frames
        frame.time_base = Fraction(1, self.sample_rate)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    # -- public ------------------------------------------------------------------
    def write(self, block: np.ndarray) -> None:
        """Append samples. Shape: ``[channels, n]``; float values in [-1, 1] for integer encodings."""
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected a block of shape [{self.channels}, n], got {tuple(block.shape)}")
        if block.shape[1] == 0:
            return
        try:
            if self._sf is None:
                self._write_mp3(block)
            else:
                self._sf.write(np.ascontiguousarray(block.T))
        except Exception as exc:
            raise AudioError(self.path, f"cannot write: {exc}") from None
        self.frames += block.shape[1]

    def _close(self) -> None:
        if self._sf is not None:
            self._sf.close()
        else:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()

    def commit(self) -> Path:
        """Finish the file and move it to its final path."""
        try:
            self._close()
            os.chmod(self.tmp_path, 0o666 & ~_umask())  # mkstemp made it private; give it the usual mode
            os.replace(self.tmp_path, self.path)
        except Exception as exc:
            self.abort()
            raise AudioError(self.path, f"cannot write: {exc}") from None
        self._committed = True
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (safe to call more than once)."""
        if self._committed:
            return
        try:
            if self._sf is not None and not self._sf.closed:
                self._sf.close()
            elif self._sf is None:
                self._container.close()
        except Exception:
            pass
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            self.abort()


def save_audio(
    path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int, fmt: OutputFormat = OutputFormat()
) -> Path:
    """Write a whole array atomically. Shape: ``[channels, frames]`` (or ``[frames]`` for mono).

    Values outside [-1, 1] are clamped for integer encodings (never wrapped).
    """
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    if not fmt.is_float:
        audio = np.clip(audio, -1.0, 1.0)
    with AudioWriter(path, sample_rate, audio.shape[0], fmt) as w:
        w.write(audio)
        return w.commit()
