"""Speaker mixtures built on the fly from folders of utterances (LibriMix-like)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DemixerError
from .augment import change_speed, limit_peak, random_eq, rms_db, speed_factor, training_eq_db
from .base import MixtureDataset
from .clips import ClipBank, list_audio, speaker_of


class SpeakerMixDataset(MixtureDataset):
    """``speakers`` different talkers at random gains and offsets, optionally over noise.

    Each utterance is levelled to -25 dBFS, then given a gain in ``gain_db``; speaker k+1
    starts so that it overlaps the previous one by a ratio drawn from ``overlap``. With
    ``noise`` folders a ``noise`` source is added at an SNR (to the speech sum) in ``snr_db``.
    With ``speed`` (training sets only) each utterance is first played faster or slower by a factor
    drawn from that range (resampled with soxr: pitch and formants move together), so a few real
    talkers give many distinct voices, as in the speed perturbation of Kaldi and SpeechBrain recipes.
    With ``eq_db`` (training sets only) each utterance also goes through a random smooth equaliser of up to
    that many dB (:func:`demixer.data.augment.random_eq`): timbre that speed alone does not vary.
    ``balance="folder"`` draws talkers so that each folder of ``utterances`` is picked equally often
    (a folder of a few real talkers beside one of many synthetic voices); ``"speaker"``: each talker.

    Args:
        utterances: folders (or files) of utterances; the speaker of each comes from
            :func:`demixer.data.clips.speaker_of` (``speaker_pattern`` overrides it).
        speakers: talkers per mixture (>= 1).
        sample_rate, segment: output rate and seconds per example.
        items: examples per epoch (validation sets are fixed by ``seed``).

    Shape:
        ``__getitem__``: ``(mixture [1, T], sources [S, 1, T])``, ``S = speakers (+1 with noise)``.
    """

    channels = 1

    def __init__(
        self,
        utterances: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
        *,
        speakers: int = 2,
        sample_rate: int = 8000,
        segment: float = 4.0,
        items: int = 1000,
        overlap: tuple[float, float] = (0.5, 1.0),
        gain_db: tuple[float, float] = (-5.0, 5.0),
        noise: Sequence[str | os.PathLike[str]] | None = None,
        snr_db: tuple[float, float] = (0.0, 20.0),
        speaker_pattern: str | None = None,
        speed: tuple[float, float] = (1.0, 1.0),
        eq_db: float = 0.0,
        balance: str = "speaker",
        seed: int = 0,
        validation: bool = False,
    ) -> None:
        if speakers < 1:
            raise ValueError(f"speakers must be >= 1, got {speakers}")
        if balance not in ("speaker", "folder"):
            raise ValueError(f"balance must be 'speaker' or 'folder', got {balance!r}")
        if not 0 < speed[0] <= speed[1]:
            raise ValueError(f"speed must be a range (low, high) of positive factors, got {speed}")
        roots = [utterances] if isinstance(utterances, (str, os.PathLike)) else list(utterances)
        by_speaker: dict[str, list[int]] = {}
        files: list[Path] = []
        for root in map(Path, roots):
            for f in list_audio(root, "utterance"):
                by_speaker.setdefault(
                    f"{root.name}/{speaker_of(f, root if root.is_dir() else None, speaker_pattern)}", []
                ).append(len(files))
                files.append(f)
        if len(by_speaker) < speakers:
            raise DemixerError(
                f"{speakers}-speaker mixtures need {speakers} different "
                f"speakers, found {len(by_speaker)}: {sorted(by_speaker)}"
            )
        self.bank = ClipBank(files, sample_rate)
        self.speakers = sorted(by_speaker)
        self.by_speaker = by_speaker
        self.noise = ClipBank(list_audio(noise, "noise"), sample_rate) if noise else None
        self.sources = tuple(f"speaker{i + 1}" for i in range(speakers)) + (("noise",) if self.noise else ())
        self.sample_rate = sample_rate
        self.frames = int(round(segment * sample_rate))
        self.n, self.overlap, self.gain_db, self.snr_db = speakers, overlap, gain_db, snr_db
        self.speed: tuple[float, float] = (1.0, 1.0) if validation else (float(speed[0]), float(speed[1]))
        self.eq_db = training_eq_db(eq_db, validation)
        folders = [label.split("/", 1)[0] for label in self.speakers]  # labels are "<folder>/<speaker>"
        per_folder = Counter(folders)
        self.speaker_p = (
            np.array([1.0 / (per_folder[f] * len(per_folder)) for f in folders]) if balance == "folder" else None
        )
        super().__init__(items=items, seed=seed, validation=validation)

    def make(self, index: int, rng: np.random.Generator) -> np.ndarray | tuple[np.ndarray, ...]:
        return self._compose(rng)[0]

    def _perturb(self, clip: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
        """``clip`` played ``factor`` times faster, then through a random equaliser of up to ``eq_db`` (none
        when 0)."""
        clip = change_speed(clip[None], factor, self.sample_rate)[0]
        return random_eq(clip, self.sample_rate, self.eq_db, rng)

    def _compose(self, rng: np.random.Generator) -> tuple[np.ndarray, list[str], list[int], list[float]]:
        """``(sources [n (+1 noise), 1, T], speaker labels, file indices, speed factors)``, speaker k in row k;
        each factor drawn from ``speed`` (no draw when the range is 1..1)."""
        chosen = rng.choice(len(self.speakers), self.n, replace=False, p=self.speaker_p)
        out = np.zeros((self.n + (self.noise is not None), 1, self.frames), np.float32)
        at = prev = 0
        used, factors = [], []
        for k, spk in enumerate(chosen):
            files = self.by_speaker[self.speakers[spk]]
            used.append(files[int(rng.integers(len(files)))])
            factors.append(speed_factor(self.speed, rng))
            clip = self._perturb(self.bank.get(used[-1]), factors[-1], rng)
            length = min(len(clip), self.frames)
            begin = int(rng.integers(0, len(clip) - length + 1))
            piece = clip[begin : begin + length]
            piece = piece * 10 ** ((-25.0 - rms_db(piece) + rng.uniform(*self.gain_db)) / 20)
            if k:
                at = max(0, min(at + int(prev * (1 - rng.uniform(*self.overlap))), self.frames - length))
            out[k, 0, at : at + length] = piece
            prev = length
        if self.noise is not None:
            noise = self.noise.crop(int(rng.integers(len(self.noise))), self.frames, rng, loop=True)
            speech_db = rms_db(out[: self.n].sum(0))
            out[-1, 0] = noise * 10 ** ((speech_db - rng.uniform(*self.snr_db) - rms_db(noise)) / 20)
        return limit_peak(out), [self.speakers[i] for i in chosen], used, factors


class TargetSpeakerDataset(SpeakerMixDataset):
    """Target-speaker extraction examples: a mixture, its ``target`` and ``residual``, and an enrolment clip.

    The target is the first of ``speakers`` talkers (``speakers=1``: the target alone, over noise when
    ``noise`` is given); the residual is the other talkers plus the noise. The enrolment clip is
    another utterance of the target's speaker when it has one, else a different stretch of the same
    recording, played at the target's ``speed`` factor (a speed-perturbed talker is another voice, enrolled as
    such), levelled to -25 dBFS and looped or cut to ``enrollment`` seconds.

    Shape:
        ``__getitem__``: ``(mixture [1, T], sources [2, 1, T], enrollment [1, Te])``.
    """

    def __init__(self, utterances, *, enrollment: float = 3.0, **kwargs) -> None:
        super().__init__(utterances, **kwargs)
        self.sources = ("target", "residual")
        self.enroll_frames = int(round(enrollment * self.sample_rate))

    def make(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        parts, speakers, used, factors = self._compose(rng)
        sources = np.stack([parts[0], parts[1:].sum(0)])
        others = [f for f in self.by_speaker[speakers[0]] if f != used[0]]
        clip = self.bank.get(others[int(rng.integers(len(others)))] if others else used[0])
        clip = change_speed(clip[None], factors[0], self.sample_rate)[0]  # the voice the target was given
        if len(clip) > self.enroll_frames:
            begin = int(rng.integers(0, len(clip) - self.enroll_frames + 1))
            clip = clip[begin : begin + self.enroll_frames]
        else:
            clip = np.resize(clip, self.enroll_frames)
        clip = clip * 10 ** ((-25.0 - rms_db(clip)) / 20)
        return sources, clip[None].astype(np.float32)
