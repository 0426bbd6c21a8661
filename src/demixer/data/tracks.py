"""Finding and reading multitrack songs: MUSDB18-HQ-style stem folders and MUSDB18 ``.stem.mp4`` files.

A stem folder is ``root/<track>/<stem>.<ext>`` with any stem names and any audio format that
:func:`demixer.audio.probe` reads; ``mixture.*`` is optional (the mixture is the sum of the
stems). A ``.stem.mp4`` holds the streams mixture, drums, bass, other, vocals, in that order.

A stem that a track lacks reads as silence, so a song without bass still trains a bass model.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..audio import AUDIO_EXTENSIONS, probe, resample
from ..audio.io import AudioInfo, count_streams, load_stream, read_frames
from ..errors import DemixerError
from ..files import walk

MUSDB_STREAMS = ("mixture", "drums", "bass", "other", "vocals")


@dataclass
class Stem:
    """One stem's audio: a file (read in crops) or a stream of a ``.stem.mp4`` (decoded once)."""

    path: Path
    stream: int | None = None
    info: AudioInfo | None = None
    _cache: np.ndarray | None = field(default=None, repr=False)
    _cache_rate: int = 0

    def read(self, start: int, frames: int, sample_rate: int, channels: int) -> np.ndarray:
        """``frames`` frames from ``start`` (both at ``sample_rate``), as ``channels`` channels.

        Shape: returns ``[channels, frames]`` float32; zeros past the end.
        """
        if self._cache is not None and self._cache_rate == sample_rate:
            out = np.zeros((self._cache.shape[0], frames), np.float32)
            piece = self._cache[:, start : start + frames]
            out[:, : piece.shape[1]] = piece
            return match_channels(out, channels)
        if self.stream is not None:  # compressed multi-stream containers are decoded whole, once
            self.load(sample_rate)
            return self.read(start, frames, sample_rate, channels)
        info = self.info = self.info or probe(self.path)
        if info.sample_rate == sample_rate:
            return match_channels(read_frames(info, start, frames), channels)
        # Read from a target-rate position that maps to a whole source sample (a multiple of the
        # reduced rate ratio's denominator) with a margin, so the crop lines up exactly with
        # resampling the whole file.
        step = Fraction(info.sample_rate, sample_rate)
        lo_t = (start - 256) // step.denominator * step.denominator
        lo = lo_t * step.numerator // step.denominator
        n = math.ceil((frames + start - lo_t + 256) * step)
        raw = read_frames(info, max(lo, 0), n + min(lo, 0))
        if lo < 0:
            raw = np.concatenate([np.zeros((raw.shape[0], -lo), np.float32), raw], axis=1)
        res = resample(raw, info.sample_rate, sample_rate)
        skip = start - lo_t
        out = np.zeros((res.shape[0], frames), np.float32)
        piece = res[:, skip : skip + frames]
        out[:, : piece.shape[1]] = piece
        return match_channels(out, channels)

    def load(self, sample_rate: int) -> np.ndarray:
        """The whole stem at ``sample_rate``, kept in memory for later reads. Shape: ``[channels, frames]``."""
        if self._cache is None or self._cache_rate != sample_rate:
            if self.stream is not None:
                audio, rate = load_stream(self.path, self.stream)
            else:
                from ..audio import load_audio

                audio, rate = load_audio(self.path, sample_rate=sample_rate)
            self._cache, self._cache_rate = resample(audio, rate, sample_rate), sample_rate
        return self._cache


def match_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Mono to ``channels`` by copying; more channels to fewer by averaging. Shape: ``[C, T]`` -> ``[channels, T]``."""
    c = audio.shape[0]
    if c == channels:
        return audio
    if c == 1:
        return np.repeat(audio, channels, axis=0)
    mono = audio.mean(0, keepdims=True)
    return mono if channels == 1 else np.repeat(mono, channels, axis=0)


@dataclass
class Track:
    """A song (or any multitrack item): stems by name, and its length in seconds."""

    name: str
    stems: dict[str, Stem]
    seconds: float
    mixture: Stem | None = None  # the mixture file when the dataset has one (else: the sum of the stems)

    def frames(self, sample_rate: int) -> int:
        return int(self.seconds * sample_rate)

    def read(self, stem: str, start: int, frames: int, sample_rate: int, channels: int) -> np.ndarray:
        """One stem's crop; silence for a stem the track lacks. Shape: ``[channels, frames]``."""
        if stem not in self.stems:
            return np.zeros((channels, frames), np.float32)
        return self.stems[stem].read(start, frames, sample_rate, channels)

    def preload(self, sample_rate: int) -> None:
        for stem in self.stems.values():
            stem.load(sample_rate)


def _folder_track(folder: Path, sources: tuple[str, ...] | None) -> Track | None:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    stems: dict[str, Stem] = {}
    mixture = next((Stem(p) for p in files if p.name.split(".")[0] == "mixture"), None)
    for p in files:
        name = p.name.split(".")[0]
        if name.startswith("mixture") or (sources is not None and name not in sources) or name in stems:
            continue
        stems[name] = Stem(p)
    if not stems:
        return None
    seconds = 0.0
    for stem in stems.values():
        stem.info = probe(stem.path)
        seconds = max(seconds, stem.info.duration)
    return Track(folder.name, stems, seconds, mixture)


def _stem_mp4_track(path: Path, sources: tuple[str, ...] | None) -> Track:
    n = count_streams(path)
    if n < len(MUSDB_STREAMS):
        raise DemixerError(f"{path}: a .stem.mp4 needs {len(MUSDB_STREAMS)} audio streams, it has {n}")
    stems = {name: Stem(path, i) for i, name in enumerate(MUSDB_STREAMS) if i and (sources is None or name in sources)}
    info = probe(path)
    return Track(path.name[: -len(".stem.mp4")], stems, info.duration, Stem(path, 0))


def find_tracks(root: str | os.PathLike[str], sources: tuple[str, ...] | list[str] | None = None) -> list[Track]:
    """All tracks under ``root`` (searched recursively), sorted by name.

    Args:
        root: a folder of track folders and/or ``.stem.mp4`` files (``train/`` and ``test/``
            below it are searched too).
        sources: the stems to keep (``None``: every stem found).

    Raises:
        DemixerError: ``root`` is missing or holds no track.
    """
    root = Path(root)
    if not root.is_dir():
        raise DemixerError(f"dataset folder {root} does not exist")
    wanted = tuple(sources) if sources is not None else None
    tracks: list[Track] = []
    for folder, _, filenames in walk(root):  # links to folders and files are followed, each folder once
        for name in filenames:
            if name.endswith(".stem.mp4"):
                tracks.append(_stem_mp4_track(folder / name, wanted))
        if any(Path(n).suffix.lower() in AUDIO_EXTENSIONS and not n.endswith(".stem.mp4") for n in filenames):
            track = _folder_track(folder, wanted)
            if track is not None:
                tracks.append(track)
    if not tracks:
        raise DemixerError(
            f"no tracks found in {root} (expected <track>/<stem>.wav|flac|ogg folders or .stem.mp4 files)"
        )
    return sorted(tracks, key=lambda t: t.name)
