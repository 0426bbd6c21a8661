"""Folders of single-source clips (utterances, noise recordings), read whole and kept in memory."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..audio import AUDIO_EXTENSIONS, load_audio
from ..errors import DemixerError
from ..files import walk


def list_audio(roots: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], what: str = "audio") -> list[Path]:
    """Every audio file under the given folders (recursively), sorted.

    Raises:
        DemixerError: a folder is missing, or none holds an audio file.
    """
    roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    files: list[Path] = []
    for root in map(Path, roots):
        if root.is_file():
            files.append(root)
            continue
        if not root.is_dir():
            raise DemixerError(f"{what} folder {root} does not exist")
        files += sorted(
            folder / name
            for folder, _, names in walk(root)
            for name in names
            if Path(name).suffix.lower() in AUDIO_EXTENSIONS and (folder / name).is_file()
        )
    if not files:
        raise DemixerError(f"no {what} files found in {', '.join(map(str, roots))}")
    return files


def speaker_of(path: Path, root: Path | None = None, pattern: str | None = None) -> str:
    """A speaker label for an utterance.

    With ``pattern`` (a regex with one group) the group matched in the file name; otherwise the
    first folder below ``root`` (LibriSpeech ``speaker/chapter/utt``), or for files directly in
    ``root`` the number before the first ``-`` (``3436-172162-0000``) or the last ``_``-separated token
    before the utterance number (``cmu_arctic_us_aew_a0001`` -> ``aew``).
    """
    if pattern:
        m = re.search(pattern, path.name)
        if not m:
            raise DemixerError(f"speaker pattern {pattern!r} does not match {path.name}")
        return m.group(1)
    if root is not None:
        rel = path.relative_to(root)
        if len(rel.parts) > 1:
            return rel.parts[0]
    stem = path.name.split(".")[0]
    if "-" in stem and stem.split("-")[0].isdigit():
        return stem.split("-")[0]
    parts = stem.split("_")
    return "_".join(parts[:-1]) if len(parts) > 1 else stem


class ClipBank:
    """Mono clips at one sample rate, decoded on first use and cached."""

    def __init__(self, files: list[Path], sample_rate: int) -> None:
        self.files = files
        self.sample_rate = sample_rate
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.files)

    def get(self, i: int) -> np.ndarray:
        """Shape: returns ``[T]`` float32 mono."""
        if i not in self._cache:
            self._cache[i] = load_audio(self.files[i], sample_rate=self.sample_rate, mono=True)[0][0]
        return self._cache[i]

    def crop(self, i: int, frames: int, rng: np.random.Generator, loop: bool = False) -> np.ndarray:
        """A random ``frames``-long crop; shorter clips are looped (``loop``) or zero-padded at a random place."""
        clip = self.get(i)
        if len(clip) >= frames:
            start = int(rng.integers(0, len(clip) - frames + 1))
            return clip[start : start + frames].copy()
        if loop:
            reps = int(np.ceil(frames / len(clip))) + 1
            tiled = np.tile(clip, reps)
            start = int(rng.integers(0, len(clip)))
            return tiled[start : start + frames].copy()
        out = np.zeros(frames, np.float32)
        at = int(rng.integers(0, frames - len(clip) + 1))
        out[at : at + len(clip)] = clip
        return out
