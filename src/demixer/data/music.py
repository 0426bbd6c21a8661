"""Music: crops of multitrack songs, remixed across tracks on the fly."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np

from .augment import NO_AUGMENT, Augment, change_speed, limit_peak, rms_db, speed_factor
from .base import MixtureDataset
from .clips import ClipBank, list_audio
from .tracks import Track, find_tracks

SILENCE_DB = -60.0


class StemDataset(MixtureDataset):
    """Segments of stem-folder / ``.stem.mp4`` tracks.

    Training items pick a random track and start (per source a different track with
    probability ``augment.remix``) and apply ``augment``; validation items are ``items_per_track``
    evenly spaced segments of every track, un-augmented.

    Two training-only augmentations add material the tracks lack. ``speed`` plays stems faster or
    slower by a factor drawn from the range (pitch and tempo move together, as resampling does): one
    factor for the whole example, or one per source in remixed examples, so a few songs give many
    keys, tempi and voices. ``extra`` names folders of solo recordings per source (e.g. singing for
    ``vocals``): with probability ``extra_p`` that source is a random crop of one of them instead,
    set to ``-8..+2`` dB against the rest of the example.

    Args:
        tracks: a dataset folder or the tracks :func:`find_tracks` returned.
        sources: stems to produce, in order (missing ones are silence).
        sample_rate, channels: output format (stems are resampled / channel-matched).
        segment: seconds per example.
        items: examples per training epoch.
        items_per_track: segments per track for validation.
        preload: decode every stem into memory first (fast random access).
        groups: sources made of several stems, e.g. ``{"accompaniment": ["drums", "bass", "other"]}``.
        speed: range of playback-speed factors (training only; ``(1, 1)``: off).
        extra: source -> folders of solo clips that may stand in for it (training only).
        extra_p: probability that a source with ``extra`` clips uses one.
        track_weights: relative chance of each track being drawn for training (``None``: all equal).

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
        speed: tuple[float, float] = (1.0, 1.0),
        extra: Mapping[str, Sequence[str | os.PathLike[str]]] | None = None,
        extra_p: float = 0.0,
        track_weights: list[float] | None = None,
    ) -> None:
        if not 0 < speed[0] <= speed[1]:
            raise ValueError(f"speed must be a range (low, high) of positive factors, got {speed}")
        if not 0.0 <= extra_p <= 1.0:
            raise ValueError(f"extra_p must be a probability in [0, 1], got {extra_p}")
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
        self.track_p = None
        if track_weights is not None:
            w = np.asarray(track_weights, np.float64)
            if w.shape != (len(self.tracks),) or (w < 0).any() or w.sum() <= 0:
                raise ValueError(
                    f"track_weights needs one weight >= 0 per track ({len(self.tracks)}), with a positive sum"
                )
            self.track_p = w / w.sum()
        unknown = sorted(set(extra or {}) - set(self.sources))
        if unknown:
            raise ValueError(f"extra clips for sources the model does not have: {', '.join(unknown)}")
        self.speed: tuple[float, float] = (1.0, 1.0) if validation else (float(speed[0]), float(speed[1]))
        self.extra_p = 0.0 if validation else extra_p
        self.extra = (
            {s: ClipBank(list_audio(roots, f"extra {s}"), sample_rate) for s, roots in (extra or {}).items()}
            if self.extra_p
            else {}
        )
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

    def _read(self, track: Track, source: str, start: int, factor: float = 1.0) -> np.ndarray:
        """``[C, frames]`` from ``start``, played ``factor`` times as fast."""
        parts = self.groups.get(source, [source])
        frames = self.frames if factor == 1.0 else int(np.ceil(self.frames * factor)) + 16
        audio = cast(np.ndarray, sum(track.read(p, start, frames, self.sample_rate, self.channels) for p in parts))
        if factor == 1.0:
            return audio
        audio = change_speed(audio, factor, self.sample_rate)
        out = np.zeros((audio.shape[0], self.frames), np.float32)
        out[:, : min(self.frames, audio.shape[1])] = audio[:, : self.frames]
        return out

    def _extra(self, source: str, rest: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A crop of a random solo clip for ``source``, ``-8..+2`` dB against ``rest`` ``[C, T]``."""
        bank = self.extra[source]
        clip = bank.crop(int(rng.integers(len(bank))), self.frames, rng, loop=True)
        if self.channels == 2:  # a mono solo panned somewhere near the centre
            pan = rng.uniform(0.3, 0.7)
            clip = np.stack([clip * np.sqrt(1 - pan), clip * np.sqrt(pan)])
        else:
            clip = clip[None].repeat(self.channels, 0)
        level = rms_db(rest) if rms_db(rest) > -60 else -20.0
        gain_db = level + rng.uniform(-8.0, 2.0) - rms_db(clip)
        return (clip * 10 ** (gain_db / 20)).astype(np.float32)

    def make(self, index: int, rng: np.random.Generator) -> np.ndarray:
        if self.validation:
            ti, start = self.windows[index]
            return np.stack([self._read(self.tracks[ti], s, start) for s in self.sources])
        remix = rng.random() < self.augment.remix
        track = self._track(rng)
        start = self._start(track, rng)
        factor = speed_factor(self.speed, rng)
        stems = []
        for s in self.sources:
            if remix:
                track = self._track(rng)
                start = self._start(track, rng)
                factor = speed_factor(self.speed, rng)
            stems.append(self._read(track, s, start, factor))
        sources = np.stack(stems)
        for i, s in enumerate(self.sources):
            if s in self.extra and rng.random() < self.extra_p:
                sources[i] = self._extra(s, np.delete(sources, i, axis=0).sum(0), rng)
        return limit_peak(self.augment(sources, rng))

    def _track(self, rng: np.random.Generator) -> Track:
        if self.track_p is None:
            return self.tracks[int(rng.integers(len(self.tracks)))]
        return self.tracks[int(rng.choice(len(self.tracks), p=self.track_p))]
