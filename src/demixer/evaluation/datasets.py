"""Evaluation datasets: what a mixture is and what its reference sources are.

Layouts recognised (``kind="auto"`` tells them apart):

- ``music``: MUSDB18-HQ-style folders ``track/{mixture,<stem>...}.wav|flac|ogg`` (the mixture is
  the sum of the stems when absent) and MUSDB18 ``.stem.mp4`` files;
- ``speakers``: LibriMix / wsj0-2mix style ``mix*/``, ``s1/``, ``s2/`` (``s3/``) folders with the
  same file names, or stem folders whose stems are ``speaker1``, ``speaker2``, ...;
- ``denoise``: VoiceBank-DEMAND style ``noisy*/`` + ``clean*/`` folders.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import AUDIO_EXTENSIONS, load_audio, probe, resample
from ..data.denoise import find_pairs
from ..data.tracks import find_tracks
from ..errors import DemixerError
from ..files import walk

KINDS = ("music", "speakers", "denoise")


@dataclass
class EvalItem:
    """One track to evaluate; ``load()`` decodes it only when needed (resumed runs skip it)."""

    name: str
    kind: str
    load: Callable[[], tuple[np.ndarray, dict[str, np.ndarray], int]]  # mixture [C, T], references {name: [C, T]}, rate


def _speaker_dirs(root: Path) -> tuple[Path, list[Path]] | None:
    mix = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("mix"))
    spk = sorted(p for p in root.iterdir() if p.is_dir() and p.name[:1] == "s" and p.name[1:].isdigit())
    if mix and len(spk) >= 2:
        return mix[0], spk
    return None


def _load_same_length(paths: list[Path]) -> tuple[list[np.ndarray], int]:
    arrays, rates = zip(*(load_audio(p) for p in paths))
    rate = rates[0]
    arrays = [resample(a, r, rate) for a, r in zip(arrays, rates)]
    n = min(a.shape[1] for a in arrays)
    return [a[:, :n] for a in arrays], rate


def detect_kind(root: Path) -> str:
    if any(name.startswith("noisy") for _, names, _ in walk(root) for name in names):
        return "denoise"
    if _speaker_dirs(root):
        return "speakers"
    tracks = find_tracks(root)
    if all(all(s.startswith("speaker") for s in t.stems) for t in tracks):
        return "speakers"
    return "music"


def load_dataset(path: str | os.PathLike[str], kind: str = "auto", limit: int | None = None) -> list[EvalItem]:
    """The items of an evaluation dataset, sorted by name.

    Raises:
        DemixerError: missing folder, unknown layout, or no item.
    """
    root = Path(path)
    if not root.is_dir():
        raise DemixerError(f"dataset folder {root} does not exist")
    if kind == "auto":
        kind = detect_kind(root)
    if kind not in KINDS:
        raise DemixerError(f"unknown dataset kind {kind!r} (choose from auto, {', '.join(KINDS)})")
    items: list[EvalItem] = []
    if kind == "denoise":
        for noisy, clean in find_pairs(root):

            def load_pair(noisy=noisy, clean=clean):
                (n, c), rate = _load_same_length([noisy, clean])
                return n, {"speech": c, "noise": n - c}, rate

            items.append(EvalItem(noisy.stem, kind, load_pair))
    elif kind == "speakers" and (folders := _speaker_dirs(root)) is not None:
        mix_dir, spk_dirs = folders
        for mix in sorted(p for p in mix_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS):
            paths = [d / mix.name for d in spk_dirs]
            missing = [p for p in paths if not p.exists()]
            if missing:
                raise DemixerError(f"{mix} has no source file {missing[0]}")

            def load_speakers(mix=mix, paths=paths):
                arrays, rate = _load_same_length([mix, *paths])
                return arrays[0], {f"speaker{i + 1}": a for i, a in enumerate(arrays[1:])}, rate

            items.append(EvalItem(mix.stem, kind, load_speakers))
    else:
        for track in find_tracks(root):

            def load_track(track=track):
                rate = probe(next(iter(track.stems.values())).path).sample_rate
                refs = {name: stem.load(rate) for name, stem in track.stems.items()}
                n = max(a.shape[1] for a in refs.values())
                channels = max(a.shape[0] for a in refs.values())
                refs = {
                    k: np.pad(np.broadcast_to(v, (channels, v.shape[1])), ((0, 0), (0, n - v.shape[1])))
                    for k, v in refs.items()
                }
                if track.mixture is not None:
                    mix = track.mixture.load(rate)
                    mix = np.pad(mix, ((0, 0), (0, max(0, n - mix.shape[1]))))[:, :n]
                else:
                    mix = sum(refs.values())
                return mix.astype(np.float32), {k: v.astype(np.float32) for k, v in refs.items()}, rate

            items.append(EvalItem(track.name, kind, load_track))
    if not items:
        raise DemixerError(f"no {kind} items found in {root}")
    items.sort(key=lambda i: i.name)
    return items[:limit] if limit else items
