"""``demixer data synth music``: songs with vocals, drums, bass and other stems, in the MUSDB layout.

Instruments are rendered with fluidsynth and a General MIDI soundfont from Bach chorales
(music21's corpus) or generated pop arrangements. The vocals follow the melody: either a TTS voice
(espeak-ng), re-pitched note by note, or real singing phrases (``vocals=`` folders), cut at
pauses and pitch-shifted.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ...audio import save_audio
from ..augment import limit_peak
from ..clips import ClipBank, list_audio
from .dsp import estimate_f0, fade, pan, shift_pitch, to_level
from .midi import Arrangement, Note, chorale, drum_groove, generated, write_midi
from .tools import espeak_voices, find_soundfont, render_midi, tts

BASS_PROGRAMS = (32, 33, 34, 35, 36, 38, 39)
OTHER_PROGRAMS = (
    0,
    1,
    2,
    4,
    5,
    16,
    17,
    19,
    24,
    25,
    26,
    27,
    29,
    40,
    42,
    48,
    49,
    50,
    52,
    56,
    61,
    65,
    68,
    71,
    73,
    80,
    81,
    88,
    89,
    90,
    91,
    95,
)
SYLLABLES = (
    "la",
    "na",
    "da",
    "oh",
    "ah",
    "yeah",
    "love",
    "night",
    "so",
    "me",
    "you",
    "go",
    "home",
    "hey",
    "mm",
    "day",
    "fly",
    "sky",
)


def _seconds(beats: float, bpm: float) -> float:
    return beats * 60.0 / bpm


def _tts_vocals(melody: list[Note], bpm: float, total: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    voice = "espeak:" + str(rng.choice(espeak_voices()))
    male = "+m" in voice or "croak" in voice
    transpose = -12 if male else 0
    default_f0 = 120.0 if male else 220.0
    out = np.zeros(total, np.float32)
    cache: dict[str, tuple[np.ndarray, float]] = {}
    for n in melody:
        syl = str(rng.choice(SYLLABLES))
        if syl not in cache:  # each syllable's own median pitch, so re-pitching lands on the note
            audio = tts(syl, voice, sr, speed=110)
            cache[syl] = (audio, estimate_f0(audio, sr) or default_f0)
        audio, f0 = cache[syl]
        target = 440.0 * 2 ** ((n.pitch + transpose - 69) / 12)
        sung = shift_pitch(audio, target / f0)
        dur = int(_seconds(n.duration, bpm) * sr)
        sung = fade(sung[: max(dur, 1)], sr, 15)
        at = int(_seconds(n.start, bpm) * sr)
        seg = out[at : at + len(sung)]
        seg += sung[: len(seg)] * (n.velocity / 100)
    return out


def _real_vocals(
    bank: ClipBank, melody: list[Note], bpm: float, total: int, sr: int, rng: np.random.Generator
) -> np.ndarray:
    """Real singing phrases, pitch-shifted by a random interval, placed where the melody's phrases start."""
    out = np.zeros(total, np.float32)
    phrase_starts = [
        n.start
        for i, n in enumerate(melody)
        if i == 0 or n.start - (melody[i - 1].start + melody[i - 1].duration) > 0.4
    ]
    for beat in phrase_starts:
        clip = bank.get(int(rng.integers(len(bank))))
        hop = sr // 20
        env = np.sqrt(np.convolve(clip**2, np.ones(hop) / hop, mode="same")) if len(clip) > hop else np.abs(clip)
        active = np.flatnonzero(env > 0.1 * (env.max() + 1e-9))
        if len(active) < sr // 2:
            continue
        a = int(rng.choice(active))
        length = int(rng.uniform(1.5, 5.0) * sr)
        phrase = clip[a : a + length]
        phrase = fade(shift_pitch(phrase, 2 ** (rng.integers(-4, 5) / 12)), sr, 30)
        at = int(_seconds(beat, bpm) * sr)
        seg = out[at : at + len(phrase)]
        seg += phrase[: len(seg)]
    return out


def _render(
    parts: list[tuple[list[Note], int, int]], bpm: float, sf: Path, sr: int, total: int, tmp: Path
) -> np.ndarray:
    midi = tmp / "part.mid"
    write_midi(midi, parts, bpm)
    audio = render_midi(midi, sf, sr)
    out = np.zeros((2, total), np.float32)
    out[:, : min(total, audio.shape[1])] = audio[:, :total]
    return out


def make_song(
    rng: np.random.Generator, sr: int, soundfont: Path, vocal_bank: ClipBank | None
) -> tuple[dict[str, np.ndarray], dict]:
    """One song: ``{stem: [2, T]}`` and a description of how it was made."""
    arr: Arrangement | None = chorale(rng) if rng.random() < 0.5 else None
    arr = arr or generated(rng, bars=int(rng.integers(8, 17)))
    bpm = float(rng.uniform(70, 140))
    shift = int(rng.integers(-4, 5))

    def tr(notes: list[Note], by: int) -> list[Note]:
        return [Note(n.start, n.duration, n.pitch + by, n.velocity) for n in notes]

    total = int((_seconds(arr.beats, bpm) + 1.5) * sr)
    bass_prog = int(rng.choice(BASS_PROGRAMS))
    other_progs = [int(p) for p in rng.choice(OTHER_PROGRAMS, 2, replace=False)]
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        drums = _render([(drum_groove(arr.beats, arr.meter, rng), 0, 9)], bpm, soundfont, sr, total, tmp)
        bass = _render(
            [(tr(arr.bass, shift - 12 if np.mean([n.pitch for n in arr.bass]) > 50 else shift), bass_prog, 0)],
            bpm,
            soundfont,
            sr,
            total,
            tmp,
        )
        other = _render(
            [(tr(arr.inner[0], shift), other_progs[0], 0), (tr(arr.inner[1], shift), other_progs[1], 1)],
            bpm,
            soundfont,
            sr,
            total,
            tmp,
        )
    melody = tr(arr.melody, shift)
    use_real = vocal_bank is not None and rng.random() < 0.5
    voice = (
        _real_vocals(vocal_bank, melody, bpm, total, sr, rng)
        if use_real and vocal_bank is not None
        else _tts_vocals(melody, bpm, total, sr, rng)
    )
    stems = {
        "vocals": pan(to_level(voice, float(rng.uniform(-22, -16))), float(rng.uniform(-0.2, 0.2))),
        "drums": to_level(drums, float(rng.uniform(-24, -18))),
        "bass": to_level(bass, float(rng.uniform(-24, -18))),
        "other": to_level(other, float(rng.uniform(-26, -18))),
    }
    stack = limit_peak(np.stack(list(stems.values())))
    info = {
        "arrangement": arr.source,
        "bpm": round(bpm, 1),
        "transpose": shift,
        "bass_program": bass_prog,
        "other_programs": other_progs,
        "vocals": "real singing" if use_real else "tts",
        "seconds": round(total / sr, 2),
    }
    return dict(zip(stems, stack)), info


def synth_music(
    out: Path,
    minutes: float,
    seed: int,
    *,
    sample_rate: int = 44100,
    soundfont: str | None = None,
    vocals: list[str] | None = None,
    progress=None,
) -> list[Path]:
    """Write songs until ``minutes`` of audio exist: ``out/song_NNNN/{vocals,drums,bass,other}.wav`` + ``info.json``."""
    sf = find_soundfont(soundfont)
    bank = ClipBank(list_audio(vocals, "vocal"), sample_rate) if vocals else None
    made, seconds, index = [], 0.0, 0
    while seconds < minutes * 60:
        rng = np.random.default_rng([seed, index])
        folder = out / f"song_{index:04d}"
        stems, info = make_song(rng, sample_rate, sf, bank)
        folder.mkdir(parents=True, exist_ok=True)
        for name, audio in stems.items():
            save_audio(folder / f"{name}.wav", audio, sample_rate)
        (folder / "info.json").write_text(
            json.dumps({**info, "seed": seed, "index": index, "soundfont": sf.name}, indent=1)
        )
        made.append(folder)
        seconds += info["seconds"]
        index += 1
        if progress:
            progress(min(seconds, minutes * 60), minutes * 60)
    return made
