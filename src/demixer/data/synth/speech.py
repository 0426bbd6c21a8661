"""``demixer data synth speech``: utterances from several TTS voices (espeak-ng, flite, festival)
plus real utterances, and two-speaker tracks built from them in the MUSDB layout.

Layout::

    out/utterances/<voice>/<n>.wav       one folder per speaker (SpeakerMixDataset reads it)
    out/tracks/mix_NNNN/{speaker1,speaker2}.wav   (StemDataset reads it; mixture = sum)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...audio import save_audio
from ..augment import limit_peak
from ..clips import ClipBank, list_audio
from .dsp import to_level
from .tools import espeak_voices, flite_voices, require, tts

WORDS = (
    "the quick brown fox jumps over a lazy dog while seven bright stars shine above the quiet harbour "
    "please bring my green umbrella back before the evening train leaves the northern station "
    "a cold wind moved through the old forest and the river carried leaves toward the sea "
    "she asked whether the meeting could start at nine or later in the afternoon "
    "every morning the baker opens his small shop and sells warm bread to the neighbours "
    "numbers like four hundred and twelve are easy to say but hard to remember "
    "the children painted colourful pictures of boats mountains birds and their favourite animals "
    "our engineers measured the signal twice and found a faint echo behind the main voice"
).split()


def sentence(rng: np.random.Generator) -> str:
    start = int(rng.integers(0, len(WORDS) - 12))
    return " ".join(WORDS[start : start + int(rng.integers(6, 13))])


def voices() -> list[str]:
    """Every TTS voice available here, as ``engine:name``, engines interleaved."""
    import itertools
    import shutil

    require("espeak-ng")
    engines = [[f"espeak:{v}" for v in espeak_voices()], [f"flite:{v}" for v in flite_voices()]]
    if shutil.which("text2wave"):
        engines.append(["festival:default"])
    # round-robin over engines, so that even a short run has every engine's voices
    return [v for group in itertools.zip_longest(*engines) for v in group if v is not None]


def synth_speech(
    out: Path, minutes: float, seed: int, *, sample_rate: int = 16000, speech: list[str] | None = None, progress=None
) -> list[Path]:
    """Write TTS utterances (about ``minutes`` of speech, spread over all voices), copy in real
    utterances (``speech=`` folders), then two-speaker tracks that use each utterance once."""
    rng = np.random.default_rng(seed)
    vs = voices()
    utt_dir = out / "utterances"
    written: list[tuple[str, Path]] = []
    seconds = 0.0
    i = 0
    while seconds < minutes * 60:
        voice = vs[i % len(vs)]
        engine, _, name = voice.partition(":")
        # speed and base pitch vary per voice so that two espeak voices differ more than their variants
        vrng = np.random.default_rng([seed, i % len(vs)])
        audio = tts(
            sentence(rng), voice, sample_rate, speed=int(vrng.integers(130, 190)), pitch=int(vrng.integers(25, 75))
        )
        audio = to_level(audio, -25.0)
        folder = utt_dir / f"{engine}_{name.replace('+', '_')}"
        path = folder / f"{i:05d}.wav"
        save_audio(path, audio[None], sample_rate)
        written.append((folder.name, path))
        seconds += len(audio) / sample_rate
        i += 1
        if progress:
            progress(min(seconds, minutes * 60), minutes * 60)
    if speech:
        bank = ClipBank(list_audio(speech, "speech"), sample_rate)
        for k, f in enumerate(bank.files):
            folder = utt_dir / f"real_{f.parent.name}_{f.stem.split('-')[0]}"
            path = folder / f"{k:05d}.wav"
            save_audio(path, to_level(bank.get(k), -25.0)[None], sample_rate)
            written.append((folder.name, path))
    tracks = []
    order = rng.permutation(len(written))
    pairs = [(a, b) for a, b in zip(order[::2], order[1::2]) if written[a][0] != written[b][0]]
    from ...audio import load_audio

    for t, (a, b) in enumerate(pairs):
        x1, _ = load_audio(written[a][1])
        x2, _ = load_audio(written[b][1])
        offset = int(rng.uniform(0, 0.5) * len(x1[0]))
        n = max(len(x1[0]), offset + len(x2[0]))
        stack = np.zeros((2, 1, n), np.float32)
        stack[0, 0, : len(x1[0])] = x1[0] * 10 ** (rng.uniform(-2.5, 2.5) / 20)
        stack[1, 0, offset : offset + len(x2[0])] = x2[0] * 10 ** (rng.uniform(-2.5, 2.5) / 20)
        stack = limit_peak(stack)
        folder = out / "tracks" / f"mix_{t:04d}"
        for k in range(2):
            save_audio(folder / f"speaker{k + 1}.wav", stack[k], sample_rate)
        (folder / "info.json").write_text(
            json.dumps({"speaker1": written[a][0], "speaker2": written[b][0], "offset_s": offset / sample_rate})
        )
        tracks.append(folder)
    return tracks
