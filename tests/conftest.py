"""Shared fixtures: paths to ../shared/data, a runner for the real CLI, small audio helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DEMIXER_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared(rel: str) -> Path:
    """A file from ../shared/data (tests and benchmarks only); skips when the folder is absent."""
    path = SHARED_DATA / rel
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real command line (``python -m demixer``) as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "demixer", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def tone(seconds: float = 1.0, sr: int = 44100, channels: int = 2, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """A test signal: a tone plus a little noise, different per channel. Shape: ``[C, T]``."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    x = np.stack([amp * np.sin(2 * np.pi * freq * (1 + 0.01 * c) * t) for c in range(channels)])
    return (x + 0.01 * rng.standard_normal(x.shape)).astype(np.float32)


def speaker_training_config(out: Path, architecture: str, config: dict):
    """A one-epoch PIT training config on two-speaker mixtures of the real utterances in ../shared."""
    from demixer.training import load_config

    roots = [str(p) for p in sorted(shared("speech").iterdir())]
    return load_config(
        data={
            "model": {"architecture": architecture, "config": config},
            "data": {
                "kind": "speakers",
                "train": roots[:4],
                "valid": roots[4:],
                "segment": 1.0,
                "items_per_epoch": 4,
                "valid_items": 2,
                "batch_size": 2,
            },
            "loss": {"terms": {"si_sdr": 1.0}, "pit": True},
            "schedule": {"epochs": 1},
            "train": {"out": str(out), "progress": False, "tensorboard": False},
        }
    )


@pytest.fixture
def cli():
    return run_cli


def write_stem_mp4(path: Path, stems: dict[str, np.ndarray], sr: int) -> Path:
    """A MUSDB18-style ``.stem.mp4``: AAC streams mixture (the sum), drums, bass, other, vocals. Stems ``[C, T]``."""
    import soundfile as sf

    tmp = path.parent / f".{path.name}.parts"
    tmp.mkdir(parents=True, exist_ok=True)
    order = ("drums", "bass", "other", "vocals")
    signals = [sum(stems[s] for s in order)] + [stems[s] for s in order]
    wavs = []
    for i, x in enumerate(signals):
        wavs.append(tmp / f"{i}.wav")
        sf.write(wavs[-1], np.asarray(x, np.float32).T, sr, subtype="FLOAT")
    cmd = (
        ["ffmpeg", "-v", "error", "-y"]
        + sum((["-i", str(w)] for w in wavs), [])
        + sum((["-map", f"{i}:a"] for i in range(5)), [])
        + ["-c:a", "aac", "-b:a", "256k", str(path)]
    )
    subprocess.run(cmd, check=True)
    for w in wavs:
        w.unlink()
    tmp.rmdir()
    return path
