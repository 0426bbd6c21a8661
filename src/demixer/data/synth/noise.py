"""``demixer data synth noise``: coloured noises (white, pink, brown, blue, violet), optionally
modulated, cuts of real noise recordings (``noise=`` folders) and babble (4-8 talkers summed, from
``speech=`` folders), as ``out/noise_NNNN/noise.wav``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import numpy as np

from ...audio import save_audio
from ..clips import ClipBank, list_audio
from .dsp import COLOURS, coloured_noise, to_level


def _babble(talkers: ClipBank, n: int, rng: np.random.Generator) -> np.ndarray:
    voices = [talkers.crop(int(rng.integers(len(talkers))), n, rng, loop=True) for _ in range(int(rng.integers(4, 9)))]
    return cast(np.ndarray, sum(to_level(v, float(rng.uniform(-6, 0))) for v in voices)).astype(np.float32)


def synth_noise(
    out: Path,
    minutes: float,
    seed: int,
    *,
    sample_rate: int = 16000,
    noise: list[str] | None = None,
    speech: list[str] | None = None,
    clip_seconds: float = 10.0,
    progress=None,
) -> list[Path]:
    bank = ClipBank(list_audio(noise, "noise"), sample_rate) if noise else None
    talkers = ClipBank(list_audio(speech, "speech"), sample_rate) if speech else None
    n = int(clip_seconds * sample_rate)
    made, seconds, index = [], 0.0, 0
    while seconds < minutes * 60:
        rng = np.random.default_rng([seed, index])
        pick = rng.random()
        if talkers is not None and pick < 0.25:
            x = _babble(talkers, n, rng)
            kind = "babble"
        elif bank is not None and pick < 0.6:
            k = int(rng.integers(len(bank)))
            x = bank.crop(k, n, rng, loop=True)
            kind = f"real:{bank.files[k].name}"
        else:
            colour = str(rng.choice(list(COLOURS)))
            x = coloured_noise(n, colour, rng)
            kind = f"colour:{colour}"
        if rng.random() < 0.4:  # slow amplitude modulation: traffic, wind, machines
            t = np.arange(n) / sample_rate
            x = x * (1 + 0.6 * np.sin(2 * np.pi * rng.uniform(0.1, 2.0) * t + rng.uniform(0, 6.3))).astype(np.float32)
            kind += "+am"
        x = to_level(x, float(rng.uniform(-35, -20)))
        folder = out / f"noise_{index:04d}"
        save_audio(folder / "noise.wav", x[None], sample_rate)
        (folder / "info.json").write_text(json.dumps({"kind": kind, "seed": seed, "index": index}))
        made.append(folder)
        seconds += clip_seconds
        index += 1
        if progress:
            progress(min(seconds, minutes * 60), minutes * 60)
    return made
