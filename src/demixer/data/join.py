"""Join short per-speaker recordings (letters, words, syllables) into utterances for speech training.

Real voices often come as many short isolated clips: a speaking-game's letters and syllables, a keyword set, a
pronunciation dictionary. :class:`~demixer.data.speech.SpeakerMixDataset` takes one utterance per talker and
segment, so a 1 s clip fills a quarter of a 4 s training segment. :func:`join_clips` trims each clip's leading and
trailing silence, levels it, and joins a speaker's clips in random order with short random pauses into utterances
of about ``seconds``, one folder per speaker (the layout ``speaker_of`` reads).

``demixer data join ROOT --out DIR``: each first-level folder of ``ROOT`` is one speaker (its files may sit in
subfolders).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio.io import load_audio
from ..errors import AudioError, DemixerError
from .augment import limit_peak, rms_db
from .clips import list_audio

LEVEL_DB = -25.0  # RMS of every trimmed clip's active part, as SpeakerMixDataset levels its talkers


def trim(clip: np.ndarray, sample_rate: int, top_db: float = 40.0, frame_s: float = 0.02) -> np.ndarray:
    """``clip`` from its first to its last frame within ``top_db`` of its loudest frame (``frame_s`` frames)."""
    frame = max(1, int(frame_s * sample_rate))
    n = len(clip) // frame
    if n == 0:
        return clip[:0]
    rms = np.sqrt(np.mean(clip[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -top_db) if rms.max() > 1e-8 else np.array([], int)
    if loud.size == 0:
        return clip[:0]
    return clip[loud[0] * frame : (loud[-1] + 1) * frame]


def _level(clip: np.ndarray) -> np.ndarray:
    return (clip * 10 ** ((LEVEL_DB - rms_db(clip)) / 20)).astype(np.float32)


def join_clips(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    seconds: float = 8.0,
    gap: tuple[float, float] = (0.08, 0.35),
    sample_rate: int = 16000,
    top_db: float = 40.0,
    min_clip: float = 0.15,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write ``out/<speaker>/<speaker>_NNNN.flac``: each speaker's clips trimmed, levelled and joined.

    Args:
        root: folder whose first-level subfolders are speakers.
        out: output folder (made; existing utterance files of the same names are replaced).
        seconds: target length of an utterance (one clip longer than this stays whole).
        gap: range of the random pause between two clips, in seconds.
        sample_rate: output rate (mono FLAC, 16-bit).
        top_db: silence threshold of the trim, below each clip's loudest 20 ms frame.
        min_clip: clips shorter than this after the trim are dropped (clicks, empty files).
        seed: shuffles the clips and draws the pauses (same seed, same files).
        progress: called with ``(speakers done, speakers)``.

    Returns:
        The files written.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise DemixerError(f"{root} is not a folder (expected one subfolder per speaker)")
    if seconds <= 0 or not 0 <= gap[0] <= gap[1]:
        raise DemixerError(f"seconds must be > 0 and gap a range (low, high) >= 0, got {seconds} and {gap}")
    speakers = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not speakers:
        raise DemixerError(f"{root} has no speaker subfolders")
    rng = np.random.default_rng(seed)
    written: list[Path] = []
    summary: dict[str, dict[str, float]] = {}
    for done, folder in enumerate(speakers):
        try:
            files = list_audio(folder, "clip")
        except DemixerError:
            files = []
        clips = []
        unreadable = 0
        for f in files:
            try:
                mono = load_audio(f, sample_rate=sample_rate, mono=True)[0][0]
            except AudioError:
                unreadable += 1
                continue
            clip = trim(mono, sample_rate, top_db)
            if len(clip) >= min_clip * sample_rate:
                clips.append(_level(clip))
        if clips:
            speaker_out = out / folder.name
            speaker_out.mkdir(parents=True, exist_ok=True)
            order = rng.permutation(len(clips))
            pieces: list[np.ndarray] = []
            length = 0
            count = 0
            for i, k in enumerate(order):
                pieces.append(clips[k])
                length += len(clips[k])
                if length >= seconds * sample_rate or i == len(order) - 1:
                    joined = np.concatenate(
                        [
                            np.concatenate([p, np.zeros(int(rng.uniform(*gap) * sample_rate), np.float32)])
                            for p in pieces[:-1]
                        ]
                        + [pieces[-1]]
                    )
                    path = speaker_out / f"{folder.name}_{count:04d}.flac"
                    sf.write(path, limit_peak(joined[None])[0], sample_rate, subtype="PCM_16")
                    written.append(path)
                    count += 1
                    pieces, length = [], 0
            summary[folder.name] = {
                "clips": len(clips),
                "unreadable": unreadable,
                "utterances": count,
                "seconds": round(sum(len(c) for c in clips) / sample_rate, 1),
            }
        if progress is not None:
            progress(done + 1, len(speakers))
    if not written:
        raise DemixerError(f"no clips with sound under {root}")
    (out / "join.json").write_text(
        json.dumps(
            {
                "source": str(root),
                "seconds": seconds,
                "gap": list(gap),
                "sample_rate": sample_rate,
                "top_db": top_db,
                "seed": seed,
                "speakers": summary,
            },
            indent=1,
        )
        + "\n"
    )
    return written
