"""The causal streaming denoiser: offline == streaming, latency from an impulse, shapes, gradients, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from demixer.models.checkpoint import load_checkpoint, save_checkpoint
from demixer.models.denoiser import Denoiser, DenoiserConfig, StreamingDenoiser, erb_band_matrix


def _stream(model: Denoiser, x: np.ndarray, seed: int = 1) -> np.ndarray:
    stream, rng, out, i = StreamingDenoiser(model), np.random.default_rng(seed), [], 0
    while i < len(x):
        n = int(rng.integers(1, 700))
        out.append(stream.process(x[i:i + n]))
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
    assert np.abs(streamed[lat:lat + len(x)] - offline).max() < 1e-5
    impulse = np.zeros(sample_rate, np.float32)
    impulse[sample_rate // 3] = 1.0
    out = _stream(model, impulse, seed=2)
    delay = int(np.argmax(np.abs(out))) - sample_rate // 3
    assert delay == lat and delay / sample_rate <= 0.020, f"algorithmic latency {1000 * delay / sample_rate:.1f} ms"


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
