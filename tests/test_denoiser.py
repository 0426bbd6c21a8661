"""The causal streaming denoiser: offline == streaming, latency from an impulse, shapes, gradients, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from demixer.models.checkpoint import load_checkpoint, save_checkpoint
from demixer.models.denoiser import Denoiser, DenoiserConfig, StreamingDenoiser, erb_band_matrix


def _stream(model: Denoiser, x: np.ndarray, seed: int = 1, **kw) -> np.ndarray:
    stream, rng, out, i = StreamingDenoiser(model, **kw), np.random.default_rng(seed), [], 0
    while i < len(x):
        n = int(rng.integers(1, 700))
        out.append(stream.process(x[i : i + n]))
        i += n
    out.append(stream.flush())
    return np.concatenate(out)


@pytest.mark.parametrize("sample_rate", [16000, 48000])
def test_streaming_equals_offline_and_latency(sample_rate):
    torch.manual_seed(0)
    model = Denoiser(DenoiserConfig(sample_rate=sample_rate)).eval()
    x = (0.1 * np.random.default_rng(0).standard_normal(sample_rate + 123)).astype(np.float32)
    with torch.no_grad():
        offline = model(torch.from_numpy(x)[None, None])[0, 0, 0].numpy()
    streamed = _stream(model, x)
    lat = model.latency
    assert len(x) + lat <= len(streamed) < len(x) + lat + model.hop  # flush completes the last hop
    assert np.abs(streamed[lat : lat + len(x)] - offline).max() < 1e-5
    impulse = np.zeros(sample_rate, np.float32)
    impulse[sample_rate // 3] = 1.0
    out = _stream(model, impulse, seed=2)
    delay = int(np.argmax(np.abs(out))) - sample_rate // 3
    assert delay == lat and delay / sample_rate <= 0.020, f"algorithmic latency {1000 * delay / sample_rate:.1f} ms"


def test_streaming_noise_limit_equals_the_offline_mix_back():
    """StreamingDenoiser's atten_lim folds --atten-lim's mix-back into the gains: the same output as the offline
    model's speech + 10^(-DB/20) x noise; without one it takes the model's default (a shipped card sets it)."""
    from demixer.separation.stems import StemPlan

    torch.manual_seed(0)
    model = Denoiser().eval()
    x = (0.1 * np.random.default_rng(3).standard_normal(16000)).astype(np.float32)
    with torch.no_grad():
        block = model(torch.from_numpy(x)[None, None])[0].numpy()
    lat = model.latency
    for kw in ({"atten_lim": 12.0}, {}):
        model.default_atten_lim = None if kw else 12.0
        limited = StemPlan.for_model(model, atten_lim=kw.get("atten_lim"))(block)["speech"][0]
        streamed = _stream(model, x, **kw)[lat : lat + len(x)]
        assert np.abs(streamed - limited).max() < 1e-5
    model.default_atten_lim = 12.0
    full = _stream(model, x, atten_lim=float("inf"))[lat : lat + len(x)]
    assert np.abs(full - block[0, 0]).max() < 1e-5 and np.abs(full - streamed).max() > 1e-3


def test_shapes_gradients_bands_and_checkpoint(tmp_path):
    m = erb_band_matrix(16000, 320, 32)
    assert m.shape == (32, 161) and np.allclose(m.sum(0), 1.0)
    model = Denoiser()
    x = torch.randn(2, 1, 8000, requires_grad=True)
    y = model(x)
    assert y.shape == (2, 2, 1, 8000)
    assert torch.allclose(y.sum(1), x, atol=1e-5), "speech + noise = mixture"
    y[:, 0].pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    path = save_checkpoint(model.eval(), tmp_path / "dn.safetensors")
    with torch.no_grad():
        assert torch.equal(load_checkpoint(path)(x.detach()), model(x.detach()))
    assert model.eval()(torch.randn(1, 1, 5)).shape == (1, 2, 1, 5)


def test_a_16k_model_runs_natively_at_48k_and_keeps_the_high_band():
    """`at_input_rate`: same weights (shared), same features on the bins the model knows, the top band's
    gain above 8 kHz; streaming still equals offline; a 16 kHz input is left alone."""
    from demixer.separation import Separator

    torch.manual_seed(0)
    model = Denoiser(DenoiserConfig(sample_rate=16000)).eval()
    assert model.at_input_rate(16000) is model and model.at_input_rate(8000) is model
    fast = model.at_input_rate(48000)
    assert fast.sample_rate == 48000 and fast.hop == 480 and fast.gru is model.gru
    assert model.at_input_rate(48000) is fast
    assert torch.equal(fast.bands[:, :161], model.bands) and not fast.bands[:, 161:].any()
    assert torch.equal(fast.expand[-1, 161:], torch.ones(fast.expand.shape[1] - 161))
    rng = np.random.default_rng(3)
    x = (0.1 * rng.standard_normal(48000)).astype(np.float32)
    with torch.no_grad():
        offline = fast(torch.from_numpy(x)[None, None])[0, 0, 0].numpy()
    streamed = _stream(fast, x)
    assert np.abs(streamed[fast.latency : fast.latency + len(x)] - offline).max() < 1e-5
    out = Separator(model=model).separate_tensor(x[None], 48000)["speech"][0].numpy()
    assert np.abs(out - offline).max() < 1e-5, "the engine runs the 48 kHz version, no resampling"
    spectrum = np.abs(np.fft.rfft(out))
    assert spectrum[12000:].mean() > 0.05 * spectrum[:8000].mean(), "content above 8 kHz survives"
