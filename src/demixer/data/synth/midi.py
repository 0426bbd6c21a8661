"""Arrangements as note lists, and their MIDI files: Bach chorales from music21's corpus,
generated chord progressions, GM drum grooves and bass lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Note:
    """A note in beats (quarter notes)."""

    start: float
    duration: float
    pitch: int
    velocity: int = 90


@dataclass
class Arrangement:
    """Four voices in beats: melody (sung), two inner voices, bass; ``beats`` long, ``meter`` beats per bar."""

    melody: list[Note]
    inner: list[list[Note]]
    bass: list[Note]
    beats: float
    meter: int
    source: str


def chorale(rng: np.random.Generator, max_beats: float = 64.0) -> Arrangement | None:
    """A random four-part Bach chorale from music21's bundled corpus (None if it has not 4 parts)."""
    from music21 import corpus

    paths = [p for p in corpus.getComposer("bach") if str(p).endswith((".mxl", ".xml", ".krn"))]
    path = paths[int(rng.integers(len(paths)))]
    score = corpus.parse(path)
    parts = []
    for part in score.parts[:4]:
        notes = []
        for n in part.flatten().notes:
            pitch = max(p.midi for p in n.pitches)
            start = float(n.getOffsetInHierarchy(score))
            if start < max_beats and n.quarterLength > 0:
                notes.append(Note(start, float(min(n.quarterLength, max_beats - start)), int(pitch)))
        parts.append(notes)
    if len(parts) < 4 or any(not p for p in parts):
        return None
    ts = score.recurse().getElementsByClass("TimeSignature")
    meter = int(ts[0].numerator) if ts else 4
    beats = min(max_beats, max(n.start + n.duration for p in parts for n in p))
    return Arrangement(parts[0], [parts[1], parts[2]], parts[3], beats, meter, f"music21:{Path(str(path)).name}")


_PROGRESSIONS = ([0, 7, 9, 5], [0, 5, 7, 0], [9, 5, 0, 7], [0, 9, 5, 7], [2, 7, 0, 0], [0, 4, 5, 7])
_MINOR_ROOTS = {9, 2, 4}


def generated(rng: np.random.Generator, bars: int = 16) -> Arrangement:
    """A pop-style arrangement: a chord progression, a stepwise melody on chord tones, pad voices, bass."""
    key = int(rng.integers(-5, 7))
    prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    meter = 4
    melody, inner_a, inner_b, bass = [], [], [], []
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    last = 72 + key
    for bar in range(bars):
        root = prog[bar % len(prog)] + key
        third = 3 if prog[bar % len(prog)] in _MINOR_ROOTS else 4
        t0 = bar * meter
        inner_a.append(Note(t0, meter, 60 + (root + third) % 12, 70))
        inner_b.append(Note(t0, meter, 55 + (root + 7) % 12, 70))
        pattern = [(0, 1.5), (1.5, 0.5), (2, 2)] if rng.random() < 0.5 else [(0, 1), (1, 1), (2, 1), (3, 1)]
        for off, dur in pattern:
            bass.append(Note(t0 + off, dur * 0.9, 36 + root % 12 + (7 if off == 2 and rng.random() < 0.3 else 0), 95))
        t = 0.0
        while t < meter:
            dur = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
            dur = min(dur, meter - t)
            chord_tones = [(root + i) % 12 for i in (0, third, 7)]
            candidates = [p for p in range(last - 5, last + 6) if p % 12 in chord_tones or (p - key) % 12 in scale]
            last = int(rng.choice(candidates))
            last = min(max(last, 62 + key % 12 - 12 + 12), 81)
            if rng.random() > 0.15:  # rests make phrases
                melody.append(Note(t0 + t, dur * 0.95, last, 90))
            t += dur
    return Arrangement(melody, [inner_a, inner_b], bass, bars * meter, meter, "generated")


_KICK, _SNARE, _HAT_C, _HAT_O, _CRASH, _RIDE = 36, 38, 42, 46, 49, 51


def drum_groove(beats: float, meter: int, rng: np.random.Generator) -> list[Note]:
    """A GM drum part: a random groove (kick/snare/hats or ride), ghost notes, fills and crashes."""
    steps_per_beat = 4
    style = int(rng.integers(4))
    hat = _RIDE if style == 3 else _HAT_C
    notes: list[Note] = []
    bars = int(np.ceil(beats / meter))
    for bar in range(bars):
        t0 = bar * meter
        fill = bar % 4 == 3 and rng.random() < 0.5
        for step in range(meter * steps_per_beat):
            t = t0 + step / steps_per_beat
            if t >= beats:
                break
            beat, sub = divmod(step, steps_per_beat)
            if fill and beat >= meter - 1:
                if sub % 2 == 0 or rng.random() < 0.5:
                    notes.append(Note(t, 0.2, int(rng.choice([45, 47, 48, 50, _SNARE])), int(rng.integers(80, 115))))
                continue
            hats_every = 2 if style in (0, 3) else 1 if style == 1 else 4
            if sub % hats_every == 0:
                notes.append(Note(t, 0.1, _HAT_O if (style == 2 and sub == 2) else hat, int(rng.integers(55, 90))))
            if sub == 0 and (beat == 0 or (beat == 2 and style != 2)) or (sub == 2 and rng.random() < 0.15):
                notes.append(Note(t, 0.2, _KICK, int(rng.integers(95, 120))))
            if sub == 0 and beat % 2 == 1:
                notes.append(Note(t, 0.2, _SNARE, int(rng.integers(95, 120))))
            elif sub in (1, 3) and rng.random() < 0.05:
                notes.append(Note(t, 0.1, _SNARE, int(rng.integers(30, 50))))
        if bar % 8 == 0:
            notes.append(Note(t0, 1.0, _CRASH, 100))
    return notes


def write_midi(path: Path, parts: list[tuple[list[Note], int, int]], bpm: float) -> None:
    """Write parts ``(notes, program, channel)`` (channel 9 = GM drums) to a type-1 MIDI file."""
    import mido

    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    tempo = mido.MidiTrack()
    tempo.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    mid.tracks.append(tempo)
    for notes, program, channel in parts:
        track = mido.MidiTrack()
        mid.tracks.append(track)
        if channel != 9:
            track.append(mido.Message("program_change", program=program, channel=channel, time=0))
        events = []
        for n in notes:
            on, off = int(round(n.start * 480)), int(round((n.start + n.duration) * 480))
            pitch = int(np.clip(n.pitch, 0, 127))
            events += [
                (on, 1, mido.Message("note_on", note=pitch, velocity=int(n.velocity), channel=channel)),
                (max(off, on + 1), 0, mido.Message("note_off", note=pitch, velocity=0, channel=channel)),
            ]
        now = 0
        for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
            track.append(msg.copy(time=tick - now))
            now = tick
    mid.save(str(path))
