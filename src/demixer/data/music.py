"""Music: crops of multitrack songs, remixed across tracks on the fly."""

from __future__ import annotations

import os

import numpy as np

from .augment import NO_AUGMENT, Augment, limit_peak
from .base import MixtureDataset
from .tracks import Track, find_tracks

SILENCE_DB = -60.0


class StemDataset(MixtureDataset):
    """Segments of stem-folder / ``.stem.mp4`` tracks.

    Training items pick a random track and start (per source a different track with
    probability ``augment.remix``) and apply ``augment``; validation items are ``items_per_track``
    evenly spaced segments of every track, un-augmented.

    Args:
        tracks: a dataset folder or the tracks :func:`find_tracks` returned.
        sources: stems to produce, in order (missing ones are silence).
        sample_rate, channels: output format (stems are resampled / channel-matched).
        segment: seconds per example.
        items: examples per training epoch.
        items_per_track: segments per track for validation.
        preload: decode every stem into memory first (fast random access).
        groups: sources made of several stems, e.g. ``{"accompaniment": ["drums", "bass", "other"]}``.

    Shape:
        ``__getitem__``: ``(mixture [C, T], sources [S, C, T])``.
    """

    def __init__(
        self,
        tracks: str | os.PathLike[str] | list[Track],
        sources: tuple[str, ...] | list[str],
        *,
        sample_rate: int = 44100,
        channels: int = 2,
        segment: float = 6.0,
        items: int = 1000,
        items_per_track: int = 4,
        augment: Augment | None = None,
        seed: int = 0,
        validation: bool = False,
        preload: bool = False,
        groups: dict[str, list[str]] | None = None,
    ) -> None:
        self.groups = {name: list(parts) for name, parts in (groups or {}).items()}
        self.tracks = find_tracks(tracks, None) if isinstance(tracks, (str, os.PathLike)) else list(tracks)
        self.sources = tuple(sources)
        self.sample_rate, self.channels = sample_rate, channels
        self.frames = int(round(segment * sample_rate))
        self.augment = NO_AUGMENT if validation else (augment or Augment())
        if not self.sources:
            raise ValueError("no sources to train on")
        wanted = {part for s in self.sources for part in self.groups.get(s, [s])}
        if not any(s in t.stems for t in self.tracks for s in wanted):
            raise ValueError(f"none of the tracks has any of the stems {', '.join(sorted(wanted))}")
        self.windows: list[tuple[int, int]] = []
        if validation:
            for ti, t in enumerate(self.tracks):
                last = max(t.frames(sample_rate) - self.frames, 0)  # windows centred in k equal parts of the song
                centres = (np.arange(items_per_track) + 0.5) / items_per_track * t.frames(sample_rate)
                starts = np.clip(centres - self.frames / 2, 0, last).round().astype(int)
                self.windows += [(ti, int(s)) for s in starts]
            items = len(self.windows)
        super().__init__(items=items, seed=seed, validation=validation)
        if preload:
            for t in self.tracks:
                t.preload(sample_rate)

    def _start(self, track: Track, rng: np.random.Generator) -> int:
        return int(rng.integers(0, max(track.frames(self.sample_rate) - self.frames, 0) + 1))

    def _read(self, track: Track, source: str, start: int) -> np.ndarray:
        parts = self.groups.get(source, [source])
        return sum(track.read(p, start, self.frames, self.sample_rate, self.channels) for p in parts)

    def make(self, index: int, rng: np.random.Generator) -> np.ndarray:
        if self.validation:
            ti, start = self.windows[index]
            return np.stack([self._read(self.tracks[ti], s, start) for s in self.sources])
        remix = rng.random() < self.augment.remix
        track = self.tracks[int(rng.integers(len(self.tracks)))]
        start = self._start(track, rng)
        stems = []
        for s in self.sources:
            if remix:
                track = self.tracks[int(rng.integers(len(self.tracks)))]
                start = self._start(track, rng)
            stems.append(self._read(track, s, start))
        return limit_peak(self.augment(np.stack(stems), rng))
