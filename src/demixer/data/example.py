"""The bundled example song, synthesised from scratch (no recording, no third-party audio).

Four stems in the usual layout: ``drums`` (kick, snare, hi-hat), ``bass`` (a plucked bass
line), ``other`` (panned chord pads) and ``vocals`` (a formant-synthesised voice singing
vowels on a melody, with vibrato, centred). ``scripts/make_example.py`` renders it to the
package's ``examples/example.flac``; tests use the stems as references.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

SR = 44100
BPM = 112.0
# vowel formants (F1, F2, F3) in Hz
_VOWELS = {
    "a": (800, 1150, 2900),
    "e": (400, 2100, 2800),
    "i": (300, 2300, 3000),
    "o": (450, 800, 2830),
    "u": (325, 700, 2700),
}


def _midi(n: float) -> float:
    return 440.0 * 2 ** ((n - 69) / 12)


def _env(n: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / SR
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / decay)


def _resonator(x: np.ndarray, freq: float, bw: float) -> np.ndarray:
    r = np.exp(-np.pi * bw / SR)
    theta = 2 * np.pi * freq / SR
    return lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)


def _place(track: np.ndarray, sound: np.ndarray, at: int) -> None:
    end = min(track.shape[-1], at + sound.shape[-1])
    if end > at:
        track[..., at:end] += sound[..., : end - at]


def make_example(seconds: float = 8.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Render the example's stems. Returns ``{stem: float32 [2, T]}`` at 44.1 kHz; their sum peaks below 1."""
    rng = np.random.default_rng(seed)
    T = int(seconds * SR)
    beat = int(60 / BPM * SR)
    stems = {s: np.zeros((2, T)) for s in ("vocals", "drums", "bass", "other")}

    # drums: kick on 1 and 3, snare on 2 and 4, eighth-note hats (hats panned right)
    for b in range(0, T // beat + 1):
        at = b * beat
        if b % 2 == 0:
            n = int(0.35 * SR)
            t = np.arange(n) / SR
            freq = 50 + 90 * np.exp(-t / 0.03)
            kick = np.sin(2 * np.pi * np.cumsum(freq) / SR) * _env(n, 0.002, 0.12)
            _place(stems["drums"], 0.9 * np.stack([kick, kick]), at)
        else:
            n = int(0.25 * SR)
            noise = _resonator(rng.standard_normal(n), 1800, 2500) * _env(n, 0.001, 0.06)
            tone = np.sin(2 * np.pi * 190 * np.arange(n) / SR) * _env(n, 0.001, 0.05)
            snare = 0.5 * noise / (np.abs(noise).max() + 1e-9) + 0.3 * tone
            _place(stems["drums"], np.stack([snare, snare]), at)
        for half in (0, beat // 2):
            n = int(0.06 * SR)
            hat = np.diff(rng.standard_normal(n + 1)) * _env(n, 0.0005, 0.015)
            _place(stems["drums"], 0.12 * np.stack([0.6 * hat, hat]), at + half)

    # harmony: | C | Am | F | G | one chord per bar
    chords = [(48, [60, 64, 67]), (45, [57, 60, 64]), (41, [57, 60, 65]), (43, [55, 59, 62])]
    bar = 4 * beat
    for k in range(T // bar + 1):
        root, notes = chords[k % len(chords)]
        # bass: root on every beat, octave on the "and" of 4 (plucked: decaying harmonics)
        for b in range(4):
            n = int(0.45 * SR)
            t = np.arange(n) / SR
            f = _midi(root - 12 + (12 if b == 3 else 0))
            tone = sum(np.sin(2 * np.pi * f * h * t) / h**1.5 for h in range(1, 6))
            _place(stems["bass"], 0.35 * np.stack([tone, tone]) * _env(n, 0.005, 0.25), k * bar + b * beat)
        # pads: detuned saw-ish chords, left and right voicings
        n = bar
        t = np.arange(n) / SR
        pad = np.zeros((2, n))
        for j, note in enumerate(notes):
            f = _midi(note)
            wave = sum(np.sin(2 * np.pi * f * (1 + 0.002 * (j - 1)) * h * t) / h for h in range(1, 8))
            pan = 0.2 + 0.3 * j
            pad += np.stack([(1 - pan) * wave, pan * wave])
        fade = np.minimum(1.0, np.minimum(t / 0.08, (n / SR - t) / 0.08))
        _place(stems["other"], 0.05 * pad * fade, k * bar)

    # vocals: glottal pulses through vowel formants, one note per beat, with vibrato
    melody = [72, 74, 76, 74, 72, 69, 71, 72, 77, 76, 74, 72, 71, 72, 74, 76]
    vowels = "aeiouaoeaiuoeaoa"
    for b in range(T // beat):
        if b % 8 == 7:  # breathe
            continue
        n = int(0.95 * beat)
        t = np.arange(n) / SR
        f0 = _midi(melody[b % len(melody)]) * (1 + 0.012 * np.sin(2 * np.pi * 5.5 * t) * np.minimum(1, t / 0.2))
        phase = np.cumsum(f0) / SR
        pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per period
        source = lfilter([1.0], [1, -0.97], pulses) + 0.02 * rng.standard_normal(n)
        voice = sum(
            _resonator(source, f, 80 + 0.05 * f) * g for f, g in zip(_VOWELS[vowels[b % len(vowels)]], (1.0, 0.6, 0.3))
        )
        voice = (
            voice / (np.abs(voice).max() + 1e-9) * _env(n, 0.04, 0.8) * np.minimum(1, (n - np.arange(n)) / (0.05 * SR))
        )
        _place(stems["vocals"], 0.3 * np.stack([voice, voice]), b * beat)

    peak = np.abs(sum(stems.values())).max()
    gain = 0.9 / peak if peak > 0.9 else 1.0
    return {s: (y * gain).astype(np.float32) for s, y in stems.items()}
