"""The external programs synthesis uses (fluidsynth, espeak-ng, flite, festival) and how to call them."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...audio import load_audio
from ...errors import DemixerError

SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
DEBIAN_PACKAGE = {"fluidsynth": "fluidsynth", "espeak-ng": "espeak-ng", "flite": "flite", "text2wave": "festival"}


def require(program: str) -> str:
    """Path of ``program``, or an error saying which Debian package provides it."""
    path = shutil.which(program)
    if path is None:
        pkg = DEBIAN_PACKAGE.get(program, program)
        raise DemixerError(f"{program} is not installed: run `apt-get install {pkg}` (make setup installs it)")
    return path


def find_soundfont(explicit: str | None = None) -> Path:
    """A General MIDI soundfont: ``explicit``, else Debian's FluidR3 or TimGM6mb."""
    candidates = [explicit] if explicit else list(SOUNDFONTS)
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise DemixerError(
        f"no General MIDI soundfont found ({explicit or ', '.join(SOUNDFONTS)}): "
        "run `apt-get install timgm6mb-soundfont` or pass --soundfont FILE.sf2"
    )


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DemixerError(f"{what} failed ({' '.join(cmd[:2])}...): {proc.stderr.strip()[-300:]}")


def render_midi(midi: Path, soundfont: Path, sample_rate: int) -> np.ndarray:
    """Render a MIDI file with fluidsynth (reverb and chorus off: effects belong to augmentation).

    Shape: returns ``[2, T]`` float32.
    """
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        _run(
            [
                require("fluidsynth"),
                "-ni",
                "-q",
                "-R",
                "0",
                "-C",
                "0",
                "-g",
                "0.6",
                "-r",
                str(sample_rate),
                "-F",
                str(wav),
                str(soundfont),
                str(midi),
            ],
            "fluidsynth",
        )
        return load_audio(wav, sample_rate=sample_rate)[0]


def espeak_voices(language: str = "en") -> list[str]:
    """espeak-ng voice names for ``language`` with its variants (``en+m3``, ``en-us+f2``, ...)."""
    require("espeak-ng")
    base = ["en", "en-us", "en-gb-x-rp", "en-gb-scotland"] if language == "en" else [language]
    variants = ["m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "croak"]
    return [f"{b}+{v}" for b in base for v in variants]


def flite_voices() -> list[str]:
    if shutil.which("flite") is None:
        return []
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
    return [v for v in out.split(":", 1)[-1].split() if v not in ("awb_time", "kal16")]


def tts(text: str, voice: str, sample_rate: int, *, speed: int = 160, pitch: int = 50) -> np.ndarray:
    """Speak ``text``. ``voice`` is ``espeak:<name>``, ``flite:<name>`` or ``festival:default``.

    Shape: returns ``[T]`` float32 mono at ``sample_rate``.
    """
    engine, _, name = voice.partition(":")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "tts.wav"
        if engine == "espeak":
            _run(
                [require("espeak-ng"), "-v", name, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
                "espeak-ng",
            )
        elif engine == "flite":
            _run([require("flite"), "-voice", name, "-t", text, "-o", str(wav)], "flite")
        elif engine == "festival":
            txt = Path(tmp) / "in.txt"
            txt.write_text(text)
            _run([require("text2wave"), str(txt), "-o", str(wav)], "festival")
        else:
            raise DemixerError(f"unknown TTS engine in voice {voice!r} (espeak:, flite:, festival:)")
        return load_audio(wav, sample_rate=sample_rate, mono=True)[0][0]
