"""Training-free separators on real recordings: each must separate something.

Scores are compared with the mixture-as-estimate baseline (what doing nothing scores).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from demixer import Separator
from demixer.audio import load_audio, resample
from demixer.data import make_example
from demixer.evaluation import sdr, si_sdr

from .conftest import shared

VALID = "music/valid/musdb18_easton_ellises_falcon69_excerpt"


@pytest.fixture(scope="module")
def valid_stems():
    return {s: load_audio(shared(f"{VALID}/{s}.flac"))[0] for s in ("vocals", "drums", "bass", "other")}


@pytest.mark.parametrize(
    "name, target, min_gain", [("hpss", "drums", 3.0), ("repet-sim", "vocals", 3.0), ("center", "vocals", 3.0)]
)
def test_music_methods_beat_the_mixture_on_real_stems(valid_stems, name, target, min_gain):
    mix = sum(valid_stems.values())
    out = Separator(name).separate_tensor(mix, 44100)
    est = out[target].numpy()
    gain = sdr(reference=valid_stems[target], estimate=est) - sdr(reference=valid_stems[target], estimate=mix)
    assert gain > min_gain, f"{name}/{target}: only {gain:+.2f} dB over the mixture"
    # a silent estimate also scores 0 dB, far above a quiet source's mixture: the estimate must carry the source
    assert np.sqrt((est**2).mean()) > 0.3 * np.sqrt((np.asarray(valid_stems[target]) ** 2).mean()), (
        f"{name}/{target} is nearly silent"
    )
    total = sum(v.numpy() for v in out.values())
    assert np.abs(total - mix).max() < 1e-4  # the stems add up to the mixture


@pytest.mark.slow
def test_hpss_on_a_cc0_training_song():
    stems = {
        s: load_audio(shared(f"music/train/caesium/{s}.ogg"), start=100, duration=20)[0]
        for s in ("vocals", "drums", "bass", "other")
    }
    mix = sum(stems.values())
    est = Separator("hpss").separate_tensor(mix, 44100)["drums"].numpy()
    assert sdr(reference=stems["drums"], estimate=est) > sdr(reference=stems["drums"], estimate=mix) + 2.0


def test_center_needs_the_centre(valid_stems):
    """Sanity of the method itself: a hard-panned vocal is not taken as centre."""
    v = valid_stems["vocals"].mean(0)
    panned = np.stack([v, np.zeros_like(v)])
    out = Separator("center").separate_tensor(panned, 44100)["vocals"].numpy()
    assert np.sqrt((out**2).mean()) < 0.05 * np.sqrt((panned**2).mean())


def test_spectral_gate_denoises_real_speech_in_real_noise():
    speech, sr = load_audio(shared("speech/librispeech/3436-172162-0000.flac"))
    speech = resample(speech[:1], sr, 16000)
    noise, nsr = load_audio(shared("noise/speech_commands_background/running_tap_30s.flac"))
    noise = resample(noise[:1], nsr, 16000)[:, : speech.shape[1]]
    noise = noise * np.sqrt((speech**2).mean() / (noise**2).mean())  # 0 dB SNR
    noisy = speech + noise
    sep = Separator("spectral-gate")
    est = sep.separate_tensor(noisy, 16000)["speech"].numpy()
    base = si_sdr(reference=speech, estimate=noisy)
    assert si_sdr(reference=speech, estimate=est) > base + 1.0
    # --atten-lim bounds the removal: with 0 dB nothing is removed
    same = Separator("spectral-gate", atten_lim=0.0).separate_tensor(noisy, 16000)["speech"].numpy()
    np.testing.assert_allclose(same, noisy, atol=1e-4)


def test_dsp_methods_on_the_bundled_example():
    stems = make_example(seconds=4.0)
    mix = sum(stems.values())
    drums = Separator("hpss").separate_tensor(mix, 44100)["drums"].numpy()
    assert sdr(reference=stems["drums"], estimate=drums) > sdr(reference=stems["drums"], estimate=mix) + 3.0
    vocals = Separator("center").separate_tensor(mix, 44100)["vocals"].numpy()
    assert sdr(reference=stems["vocals"], estimate=vocals) > sdr(reference=stems["vocals"], estimate=mix) + 3.0


@pytest.mark.parametrize("name", ["hpss", "repet-sim", "center", "spectral-gate"])
def test_dsp_models_are_registered_and_shape_correct(name):
    from demixer import load_model

    model = load_model(name)
    x = torch.randn(2, 2, 12345) * 0.1
    y = model(x)
    assert y.shape == (2, len(model.sources), 2, 12345)
    torch.testing.assert_close(y.sum(1), x, atol=1e-4, rtol=1e-4)


def test_repet_sim_repeating_model_is_the_median_of_the_similar_frames_found():
    """The sort-based median must equal NumPy's nanmedian over each frame's similar frames, also where a short
    excerpt leaves frames with fewer than k of them (the -1 entries)."""
    from demixer.dsp.repet import RepetSim

    rng = np.random.default_rng(0)
    method = RepetSim(min_distance=0.5)
    mag = np.abs(rng.standard_normal((2, 1025, 300))).astype(np.float32)  # 3.5 s: at most 7 peaks 0.5 s apart
    idx = method.similar_frames(mag.mean(axis=0))
    assert (idx < 0).any() and (idx >= 0).sum(axis=1).min() >= 1
    candidates = mag[:, :, np.maximum(idx, 0)]
    candidates[..., idx < 0] = np.nan
    np.testing.assert_allclose(method.repeating_model(mag, idx), np.nanmedian(candidates, axis=-1), rtol=1e-6)
