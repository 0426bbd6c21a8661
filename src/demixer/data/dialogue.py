"""Dialogue / music / effects data: speech, a music bed and effects mixed on the fly at the balances of
podcasts, film and field recordings (the "Divide and Remaster" split, Petermann et al. 2022)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DemixerError
from .augment import limit_peak, random_eq, rms_db, training_eq_db
from .base import MixtureDataset
from .clips import ClipBank, list_audio
from .tracks import find_tracks

MUSIC_STEMS = ("vocals", "drums", "bass", "other")

Roots = Sequence[str | os.PathLike[str]] | str | os.PathLike[str]


class MusicBank(ClipBank):
    """Music clips: plain audio files, and songs kept as stem folders (MUSDB layout), read as the
    mono sum of their stems."""

    def __init__(self, roots: Roots, sample_rate: int) -> None:
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        files: list[Path] = []
        self.songs: dict[int, list[Path]] = {}  # clip index -> the stem files to sum
        for root in roots:
            try:
                tracks = find_tracks(root, MUSIC_STEMS) if Path(root).is_dir() else []
            except DemixerError:  # no song in stems here
                tracks = []
            in_songs = set()
            for track in tracks:
                stems = [stem.path for stem in track.stems.values()]
                in_songs |= {p.parent for p in stems}
                self.songs[len(files)] = stems
                files.append(stems[0].parent / track.name)
            try:
                loose = list_audio(root, "music")
            except DemixerError:
                if not tracks:
                    raise
                loose = []
            files += [p for p in loose if p.parent not in in_songs and not p.name.endswith(".stem.mp4")]
        super().__init__(files, sample_rate)

    def get(self, i: int) -> np.ndarray:
        if i not in self.songs:
            return super().get(i)
        if i not in self._cache:
            stems = [ClipBank([p], self.sample_rate).get(0) for p in self.songs[i]]
            n = max(len(s) for s in stems)
            self._cache[i] = np.stack([np.pad(s, (0, n - len(s))) for s in stems]).sum(axis=0).astype(np.float32)
        return self._cache[i]


@dataclass(frozen=True)
class DialogueBalance:
    """How an example is levelled. ``speech_db``: the speech's RMS in dBFS; ``music_db``, ``effects_db``:
    their RMS relative to the speech; ``*_p``: the chance that each is present at all (absent sources
    are silent, so the model learns to say "no music here")."""

    speech_db: tuple[float, float] = (-35.0, -15.0)
    music_db: tuple[float, float] = (-25.0, 3.0)
    effects_db: tuple[float, float] = (-25.0, 5.0)
    speech_p: float = 0.9
    music_p: float = 0.7
    effects_p: float = 0.7


class DialogueMixDataset(MixtureDataset):
    """Utterances, music and effects summed at random balances. Sources: ``speech``, ``music``, ``effects``.

    Speech clips shorter than the segment sit at a random place in silence (pauses, as in a talk);
    music and effects are looped. Each clip gets its own random equaliser of up to ``eq_db`` dB
    (training only).

    Shape:
        ``__getitem__``: ``(mixture [1, T], sources [3, 1, T])``.
    """

    sources = ("speech", "music", "effects")
    channels = 1

    def __init__(
        self,
        speech: Roots,
        music: Roots,
        effects: Roots,
        *,
        sample_rate: int = 16000,
        segment: float = 4.0,
        items: int = 1000,
        balance: DialogueBalance | None = None,
        eq_db: float = 0.0,
        seed: int = 0,
        validation: bool = False,
    ) -> None:
        self.balance = balance or DialogueBalance()
        for name in ("speech_db", "music_db", "effects_db"):
            lo, hi = getattr(self.balance, name)
            if lo > hi:
                raise ValueError(f"{name} range is reversed: {(lo, hi)}")
        self.eq_db = training_eq_db(eq_db, validation)
        self.speech = ClipBank(list_audio(speech, "speech"), sample_rate)
        self.music = MusicBank(music, sample_rate)
        self.effects = ClipBank(list_audio(effects, "effects"), sample_rate)
        self.sample_rate = sample_rate
        self.frames = int(round(segment * sample_rate))
        super().__init__(items=items, seed=seed, validation=validation)

    def _clip(self, bank: ClipBank, rng: np.random.Generator, loop: bool) -> np.ndarray:
        clip = bank.crop(int(rng.integers(len(bank))), self.frames, rng, loop=loop)
        return random_eq(clip, self.sample_rate, self.eq_db, rng)

    def make(self, index: int, rng: np.random.Generator) -> np.ndarray:
        b = self.balance
        speech = self._clip(self.speech, rng, loop=False)
        music = self._clip(self.music, rng, loop=True)
        effects = self._clip(self.effects, rng, loop=True)
        reference_db = rng.uniform(*b.speech_db)
        speech *= 10 ** ((reference_db - rms_db(speech)) / 20)
        music *= 10 ** ((reference_db + rng.uniform(*b.music_db) - rms_db(music)) / 20)
        effects *= 10 ** ((reference_db + rng.uniform(*b.effects_db) - rms_db(effects)) / 20)
        present = rng.random(3) < (b.speech_p, b.music_p, b.effects_p)
        stack = np.stack([speech, music, effects]) * present[:, None]
        return limit_peak(stack[:, None].astype(np.float32))
