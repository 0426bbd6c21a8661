"""Speech enhancement data: noisy/clean pair folders, and clean speech mixed with noise at random SNR."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..audio import AUDIO_EXTENSIONS
from ..errors import DemixerError
from ..files import walk
from .augment import limit_peak, random_eq, rms_db, training_eq_db
from .base import MixtureDataset
from .clips import ClipBank, list_audio


def find_pairs(root: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """``(noisy, clean)`` file pairs of a VoiceBank-DEMAND-style folder.

    Any ``noisy*`` folder under ``root`` is paired with its sibling ``clean*`` folder (same
    suffix, e.g. ``noisy_trainset_28spk_wav`` / ``clean_trainset_28spk_wav``) by file name.

    Raises:
        DemixerError: no pair found, or a noisy file without its clean twin.
    """
    root = Path(root)
    if not root.is_dir():
        raise DemixerError(f"dataset folder {root} does not exist")
    pairs = []
    noisy_dirs = sorted(folder / name for folder, names, _ in walk(root) for name in names if name.startswith("noisy"))
    for noisy_dir in noisy_dirs:
        clean_dir = noisy_dir.with_name("clean" + noisy_dir.name[len("noisy") :])
        if not clean_dir.is_dir():
            raise DemixerError(f"{noisy_dir} has no sibling {clean_dir.name}")
        for noisy in sorted(p for p in noisy_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS):
            clean = clean_dir / noisy.name
            if not clean.exists():
                raise DemixerError(f"{noisy} has no clean twin {clean}")
            pairs.append((noisy, clean))
    if not pairs:
        raise DemixerError(
            f"no noisy/clean pairs in {root} (expected noisy*/ and clean*/ folders with the same file names)"
        )
    return pairs


class _Crop:
    """Where to cut a ``frames`` window out of a ``length`` clip: random for training, centred for validation."""

    @staticmethod
    def start(length: int, frames: int, rng: np.random.Generator, validation: bool) -> int:
        room = max(length - frames, 0)
        return room // 2 if validation else int(rng.integers(0, room + 1))


class NoisyCleanDataset(MixtureDataset):
    """Crops of real noisy/clean pairs. Sources: ``speech`` (the clean file) and ``noise`` (noisy - clean).

    Shape:
        ``__getitem__``: ``(mixture [1, T], sources [2, 1, T])``; the mixture is the noisy file.
    """

    sources = ("speech", "noise")
    channels = 1

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        sample_rate: int = 16000,
        segment: float = 3.0,
        items: int = 1000,
        seed: int = 0,
        validation: bool = False,
    ) -> None:
        pairs = find_pairs(root)
        self.noisy = ClipBank([p[0] for p in pairs], sample_rate)
        self.clean = ClipBank([p[1] for p in pairs], sample_rate)
        self.sample_rate = sample_rate
        self.frames = int(round(segment * sample_rate))
        super().__init__(items=len(pairs) if validation else items, seed=seed, validation=validation)

    def make(self, index: int, rng: np.random.Generator) -> np.ndarray:
        i = index if self.validation else int(rng.integers(len(self.noisy)))
        noisy, clean = self.noisy.get(i), self.clean.get(i)
        n = min(len(noisy), len(clean))
        s = _Crop.start(n, self.frames, rng, self.validation)
        out = np.zeros((2, 1, self.frames), np.float32)
        piece = clean[s : s + self.frames]
        out[0, 0, : len(piece)] = piece
        out[1, 0, : len(piece)] = noisy[s : s + len(piece)] - piece
        return out


class NoiseMixDataset(MixtureDataset):
    """Clean utterances plus real noise at an SNR drawn from ``snr_db``. Sources: ``speech``, ``noise``.
    With ``eq_db`` (training sets only) the speech and the noise each go through their own random smooth
    equaliser of up to that many dB (:func:`demixer.data.augment.random_eq`) before levelling.

    Shape:
        ``__getitem__``: ``(mixture [1, T], sources [2, 1, T])``.
    """

    sources = ("speech", "noise")
    channels = 1

    def __init__(
        self,
        speech: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
        noise: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
        *,
        sample_rate: int = 16000,
        segment: float = 3.0,
        items: int = 1000,
        snr_db: tuple[float, float] = (-5.0, 20.0),
        level_db: tuple[float, float] = (-35.0, -15.0),
        eq_db: float = 0.0,
        seed: int = 0,
        validation: bool = False,
    ) -> None:
        if snr_db[0] > snr_db[1]:
            raise ValueError(f"snr_db range is reversed: {snr_db}")
        self.eq_db = training_eq_db(eq_db, validation)
        self.speech = ClipBank(list_audio(speech, "speech"), sample_rate)
        self.noise = ClipBank(list_audio(noise, "noise"), sample_rate)
        self.sample_rate = sample_rate
        self.frames = int(round(segment * sample_rate))
        self.snr_db, self.level_db = snr_db, level_db
        super().__init__(items=items, seed=seed, validation=validation)

    def make(self, index: int, rng: np.random.Generator) -> np.ndarray:
        speech = self.speech.crop(int(rng.integers(len(self.speech))), self.frames, rng)
        noise = self.noise.crop(int(rng.integers(len(self.noise))), self.frames, rng, loop=True)
        speech, noise = (random_eq(x, self.sample_rate, self.eq_db, rng) for x in (speech, noise))
        speech = speech * 10 ** ((rng.uniform(*self.level_db) - rms_db(speech)) / 20)
        noise = noise * 10 ** ((rms_db(speech) - rng.uniform(*self.snr_db) - rms_db(noise)) / 20)
        return limit_peak(np.stack([speech, noise])[:, None])
