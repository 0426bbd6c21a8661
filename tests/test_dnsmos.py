"""DNSMOS P.835 in the quality report: demixer's runner of Microsoft's ONNX model against speechmos (the reference
implementation of the published code) on the same real recordings, and the report's before/after scores."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from demixer.evaluation.dnsmos import dnsmos
from demixer.evaluation.quality import quality_signals

from .conftest import shared

PAIRS = shared("denoising_pairs/valentini_p287")


def pair(index: int = 0, repeat: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
    """A real noisy recording and its clean speech (Valentini p287), repeated ``repeat`` times."""
    name = sorted(p.name for p in (PAIRS / "noisy").iterdir())[index]
    noisy, sr = sf.read(PAIRS / "noisy" / name, dtype="float32")
    clean, _ = sf.read(PAIRS / "clean" / name, dtype="float32")
    n = min(noisy.size, clean.size)
    return np.tile(noisy[:n], repeat), np.tile(clean[:n], repeat), sr


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_dnsmos_matches_the_reference(index):
    reference = pytest.importorskip("speechmos.dnsmos")  # imports librosa, whose first use compiles for ~20 s
    noisy, clean, sr = pair(index, repeat=7)  # longer than one 9.01 s window
    for x in (noisy, clean, clean[: sr * 3]):  # a short one is repeated to fill a window
        ours = dnsmos(x, sr)
        ref = reference.run(x, sr)
        for name in ("sig", "bak", "ovrl"):
            assert abs(ours[name] - float(ref[f"{name}_mos"])) < 1e-3, (name, ours, ref)


def test_dnsmos_rates_clean_speech_above_noisy_and_takes_any_rate():
    noisy, clean, sr = pair(0)
    a, b = dnsmos(noisy, sr), dnsmos(clean, sr)
    assert b["bak"] > a["bak"] + 1 and b["ovrl"] > a["ovrl"] + 0.5, (a, b)
    import soxr

    stereo48 = np.stack([soxr.resample(clean, sr, 48000)] * 2)  # another rate, two channels
    assert all(abs(dnsmos(stereo48, 48000)[k] - b[k]) < 0.1 for k in b)
    with pytest.raises(ValueError, match="silent"):
        dnsmos(np.zeros(sr), sr)


def test_quality_report_gives_dnsmos_before_and_after_for_speech_stems():
    noisy, clean, sr = pair(1)
    report = quality_signals(noisy[None], {"speech": clean[None], "noise": (noisy - clean)[None]}, sr)
    before = report["mixture_dnsmos"]
    speech = report["stems"]["speech"]
    assert speech["dnsmos_change"]["ovrl"] == pytest.approx(speech["dnsmos"]["ovrl"] - before["ovrl"], abs=2e-3)
    assert speech["dnsmos_change"]["bak"] > 1  # the clean speech: far less background than the noisy input
    assert "dnsmos" not in report["stems"]["noise"]
    music = quality_signals(noisy[None], {"vocals": clean[None], "other": (noisy - clean)[None]}, sr)
    assert "mixture_dnsmos" not in music and "dnsmos" not in music["stems"]["vocals"]  # speech stems only


def test_quality_report_says_why_dnsmos_is_missing(monkeypatch):
    import demixer.evaluation.quality as quality

    monkeypatch.setattr(quality, "missing_modules", lambda extra: ["speechmos"])
    noisy, clean, sr = pair(0)
    report = quality_signals(noisy[None], {"speech": clean[None], "noise": (noisy - clean)[None]}, sr)
    assert "demixer[eval]" in report["dnsmos_unavailable"] and "dnsmos" not in report["stems"]["speech"]
