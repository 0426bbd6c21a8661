"""STFT pair, masks and the multichannel Wiener filter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from demixer.evaluation import sdr
from demixer.transforms import STFT, binary_mask, complex_mask, ratio_mask, wiener


@pytest.mark.parametrize("n_fft, hop", [(2048, 512), (4096, 1024), (512, 128), (1024, 256)])
@pytest.mark.parametrize("length", [1, 100, 44100, 44101])
def test_stft_round_trip_below_1e_5(n_fft, hop, length):
    x = torch.randn(2, length, generator=torch.Generator().manual_seed(0)) * 0.5
    stft = STFT(n_fft, hop)
    spec = stft(x)
    assert spec.shape == (2, n_fft // 2 + 1, length // hop + 1)
    assert (stft.inverse(spec, length) - x).abs().max() < 1e-5


def test_ratio_masks_sum_to_one_and_split_silence_evenly():
    mags = torch.rand(3, 2, 10, 7)
    mags[:, 0, 0, 0] = 0
    m = ratio_mask(mags, power=2, dim=0)
    torch.testing.assert_close(m.sum(0), torch.ones(2, 10, 7))
    torch.testing.assert_close(m[:, 0, 0, 0], torch.full((3,), 1 / 3))
    b = binary_mask(mags, dim=0)
    assert torch.equal(b.sum(0), torch.ones(2, 10, 7))


def test_complex_mask_is_complex_multiplication():
    spec = torch.randn(4, 5, dtype=torch.complex64)
    ri = torch.randn(4, 5, 2)
    out = spec * complex_mask(ri)
    expected = spec * torch.complex(ri[..., 0], ri[..., 1])
    torch.testing.assert_close(out, expected)


def _two_sources(seconds=2.0, sr=16000):
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * sr)) / sr
    a = np.sin(2 * np.pi * 440 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t))
    b = rng.standard_normal(t.size) * 0.2 * (t % 0.5 < 0.1)
    # different spatial images: a left-heavy, b right-heavy
    s = np.stack([np.stack([0.9 * a, 0.3 * a]), np.stack([0.2 * b, 0.8 * b])]).astype(np.float32)  # [J, C, T]
    return torch.from_numpy(s)


@pytest.mark.parametrize("iterations", [1, 2])
def test_wiener_sums_to_mixture_and_beats_ratio_mask(iterations):
    sources = _two_sources()
    mix = sources.sum(0)
    stft = STFT(1024, 256)
    X = stft(mix).permute(1, 2, 0)  # [F, N, C]
    S = stft(sources).permute(2, 3, 1, 0)  # [F, N, C, J]
    noisy_mags = S.abs() * (1 + 0.3 * torch.rand(S.shape, generator=torch.Generator().manual_seed(0)))
    y0 = wiener(noisy_mags, X, iterations=0, softmask=True)
    y = wiener(noisy_mags, X, iterations=iterations, softmask=True, window_frames=40)
    torch.testing.assert_close(y.sum(-1), X, atol=1e-4, rtol=1e-3)
    est0 = stft.inverse(y0.permute(3, 2, 0, 1), mix.shape[-1]).numpy()
    est = stft.inverse(y.permute(3, 2, 0, 1), mix.shape[-1]).numpy()
    ref = sources.numpy()
    gain = np.mean([sdr(reference=ref[j], estimate=est[j]) - sdr(reference=ref[j], estimate=est0[j]) for j in range(2)])
    assert gain > 0.5, f"EM should use the spatial images: {gain:.2f} dB"


def test_wiener_memory_is_windowed():
    # 20 000 frames with a 300-frame window: runs without holding [F, N, C, C, J] for all frames
    F, N = 65, 20000
    X = torch.randn(F, N, 2, dtype=torch.complex64)
    v = torch.rand(F, N, 2, 3)
    y = wiener(v, X, iterations=1, window_frames=300)
    assert y.shape == (F, N, 2, 3)
    torch.testing.assert_close(y.sum(-1), X, atol=1e-3, rtol=1e-3)
