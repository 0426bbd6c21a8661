"""Shared fixtures: paths to ../shared/data, a runner for the real CLI, small audio helpers.

Tiers: ``make test-fast`` runs ``-m "not slow"`` (in-process tests on small inputs); ``make test`` runs
everything. A test that runs the CLI in a subprocess must be marked ``slow`` (``run_cli`` checks it).
Under CI (``CI`` set), a skipped test fails unless its reason is one of :data:`ALLOWED_SKIPS`: missing
shared data or a missing dev dependency must not quietly shrink the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DEMIXER_SHARED_DATA", ROOT.parent / "shared" / "data"))
IN_CI = bool(os.environ.get("CI"))
ALLOWED_SKIPS = (
    "needs a CUDA GPU",
    "is not shipped in this version",
    "cannot mount a tmpfs here",
)  # CI accepts only these

# the user's model choices and model cache stay out of the tests (and out of the CLI runs they start)
_ISOLATED = Path(tempfile.mkdtemp(prefix="demixer-tests-"))
os.environ.setdefault("DEMIXER_CONFIG_DIR", str(_ISOLATED / "config"))
os.environ.setdefault("DEMIXER_CACHE_DIR", str(_ISOLATED / "cache"))

_current: list[pytest.Item] = []  # the running test (set by the autouse fixture below)


@pytest.fixture(autouse=True)
def _remember_current_test(request):
    _current.append(request.node)
    yield
    _current.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a skip is a failure, unless its reason is allowed (no GPU here, a model this version lacks)."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(allowed in reason for allowed in ALLOWED_SKIPS):
            report.outcome = "failed"
            report.longrepr = f"skipped under CI (CI must run every test): {reason}"


def shared(rel: str) -> Path:
    """A file from ../shared/data (tests and benchmarks only); skips when the folder is absent (fails under CI)."""
    path = SHARED_DATA / rel
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real command line (``python -m demixer``) as a user would; only from tests marked ``slow``."""
    if _current and _current[-1].get_closest_marker("slow") is None:
        pytest.fail(f"{_current[-1].nodeid} runs the CLI in a subprocess: mark it @pytest.mark.slow")
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
    """A short PIT training config (4 epochs of 4 steps) on two-speaker mixtures of the real utterances in ../shared:
    enough for validation to show that the model learns (:func:`assert_learned`)."""
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
                "items_per_epoch": 16,
                "valid_items": 4,
                "batch_size": 4,
            },
            "loss": {"terms": {"si_sdr": 1.0}, "pit": True},
            "optim": {"lr": 0.003},
            "schedule": {"epochs": 4, "warmup_steps": 0},
            "train": {"out": str(out), "progress": False, "tensorboard": False, "log_every": 1},
        }
    )


def assert_learned(run: Path, metric: str, min_gain: float, loss_down: bool = False) -> None:
    """The run's validation ``metric`` (dB) rose by ``min_gain`` or more from the first validation to the best
    later one; with ``loss_down``, the mean training loss of the last quarter of steps is also below the first
    quarter's (``valid.csv`` and ``train.csv`` of the run folder; log every step for the latter)."""
    import csv

    with (run / "valid.csv").open() as f:
        scores = [float(r[metric]) for r in csv.DictReader(f)]
    assert len(scores) >= 2 and max(scores[1:]) >= scores[0] + min_gain, (
        f"validation {metric} did not improve: {scores}"
    )
    if loss_down:
        with (run / "train.csv").open() as f:
            losses = [float(r["loss"]) for r in csv.DictReader(f)]
        quarter = max(1, len(losses) // 4)
        first, last = np.mean(losses[:quarter]), np.mean(losses[-quarter:])
        assert last < first, f"training loss did not go down: {first:.3f} -> {last:.3f} ({losses})"


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


def held_out_talkers(tmp_path: Path, seconds: float = 3.0, rate: int = 16000) -> dict[str, Path | np.ndarray]:
    """Two real talkers no shipped extractor trained or was validated on, overlapped at 0 dB: VCTK p286 (male,
    the target) and VCTK p240 (female). ``mix.wav`` holds the first ``seconds`` of each; ``enrol.wav`` is the rest
    of p286's recording (3.8 s). Returns the paths and the two references (``target``, ``other``) at ``rate``."""
    import soundfile as sf

    from demixer.audio import load_audio

    n = int(seconds * rate)
    target, _ = load_audio(shared("speech/vctk/p286_011.flac"), sample_rate=rate, mono=True)
    other, _ = load_audio(shared("speech/vctk_rtvc/p240_00000.flac"), sample_rate=rate, mono=True)
    level = lambda x: x / np.sqrt(np.mean(x**2)) * 0.05  # noqa: E731
    ref, interferer = level(target[0, :n]), level(other[0, :n])
    paths = {"mix": tmp_path / "mix.wav", "enrol": tmp_path / "enrol.wav"}
    sf.write(paths["mix"], ref + interferer, rate, subtype="FLOAT")
    sf.write(paths["enrol"], target[0, n:], rate, subtype="FLOAT")
    return {**paths, "target": ref, "other": interferer}
