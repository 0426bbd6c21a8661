"""Fixed evaluation sets written to disk from the on-the-fly mixture datasets, in the layouts
``demixer evaluate`` reads: LibriMix (``mix_clean/``, ``s1/``, ``s2/`` ...) for speakers,
VoiceBank-DEMAND (``noisy/``, ``clean/``) for denoising. Same seed, same files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..audio import save_audio
from .base import MixtureDataset
from .denoise import NoiseMixDataset
from .speech import SpeakerMixDataset


def write_fixed_set(dataset: MixtureDataset, out: Path, progress=None) -> list[Path]:
    """Write every item of ``dataset`` (built with ``validation=True``) under ``out``; returns the mixtures."""
    out = Path(out)
    made = []
    for i in range(len(dataset)):
        sources = dataset.make(i, dataset.rng(i))
        sources = sources[0] if isinstance(sources, tuple) else sources
        mixture = sources.sum(0)
        name = f"{i:04d}.wav"
        if isinstance(dataset, SpeakerMixDataset):
            folders = {"mix_clean": mixture, **{f"s{k + 1}": sources[k] for k in range(dataset.n)}}
        else:
            folders = {"noisy": mixture, "clean": sources[0]}
        for folder, audio in folders.items():
            save_audio(out / folder / name, np.asarray(audio, np.float32), dataset.sample_rate)
        made.append(out / next(iter(folders)) / name)
        if progress:
            progress(i + 1, len(dataset))
    return made


def mix_dataset(
    kind: str,
    *,
    speech: list[str],
    noise: list[str] | None,
    items: int,
    seconds: float,
    seed: int,
    sample_rate: int,
    speakers: int = 2,
) -> MixtureDataset:
    if kind == "speakers":
        return SpeakerMixDataset(
            speech,
            speakers=speakers,
            sample_rate=sample_rate,
            segment=seconds,
            items=items,
            noise=noise or None,
            seed=seed,
            validation=True,
        )
    return NoiseMixDataset(
        speech, noise or [], sample_rate=sample_rate, segment=seconds, items=items, seed=seed, validation=True
    )


def describe(out: Path, **settings) -> None:
    (Path(out) / "mix.json").write_text(json.dumps(settings, indent=2) + "\n")
