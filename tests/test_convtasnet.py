"""Conv-TasNet speaker separation: shapes, gradients, PIT training through the trainer, the speaker-count rule."""

from __future__ import annotations

import math

import numpy as np
import torch

from demixer.models.checkpoint import build_model
from demixer.models.convtasnet import ConvTasNet, ConvTasNetConfig, active_speakers
from demixer.training import train

from .conftest import assert_learned, speaker_training_config

TINY = {"filters": 32, "kernel": 16, "bottleneck": 16, "hidden": 32, "blocks": 2, "repeats": 1}


def test_shapes_gradients_and_causal_mode():
    for causal in (False, True):
        m = ConvTasNet(ConvTasNetConfig(sources=("speaker1", "speaker2", "speaker3"), causal=causal, **TINY))
        x = torch.randn(2, 1, 4001, requires_grad=True)
        y = m(x)
        assert y.shape == (2, 3, 1, 4001)
        y.pow(2).mean().backward()
        last = f"tcn.{len(m.tcn) - 1}.res."  # the last block's residual output feeds nothing (as in the paper)
        assert all(p.grad is not None for n, p in m.named_parameters() if not n.startswith(last))
    m = ConvTasNet(ConvTasNetConfig(causal=True, **TINY)).eval()
    x = torch.randn(1, 1, 4000)
    with torch.no_grad():
        full, head = m(x), m(x[..., :2000])
    assert torch.allclose(full[..., :1900], head[..., :1900], atol=1e-5), (
        "causal: the past does not depend on the future"
    )


def test_trains_with_pit_on_speaker_mixtures(tmp_path):
    r = train(speaker_training_config(tmp_path / "ctn", "convtasnet", {"sources": ["speaker1", "speaker2"], **TINY}))
    assert r.finished and math.isfinite(r.valid["si_sdr"])
    assert_learned(tmp_path / "ctn", "si_sdr", min_gain=2.0, loss_down=True)  # seen: -12.8 -> -7.0 dB in 4 epochs
    assert build_model("convtasnet", {"sources": ["a", "b"], **TINY}).sources == ("a", "b")


def test_active_speaker_rule():
    rng = np.random.default_rng(0)
    stems = {
        "speaker1": rng.standard_normal(8000) * 0.1,
        "speaker2": rng.standard_normal(8000) * 0.05,
        "speaker3": rng.standard_normal(8000) * 1e-4,
    }
    assert active_speakers(stems) == ["speaker1", "speaker2"]
    assert active_speakers(stems, threshold_db=80) == ["speaker1", "speaker2", "speaker3"]


def test_mixture_gain_sets_the_level_without_touching_si_sdr():
    """SI-SDR training leaves the output level free: at inference the outputs get the least-squares gains
    that make their sum closest to the mixture; each output's SI-SDR is unchanged."""
    from demixer.evaluation import si_sdr
    from demixer.models.convtasnet import mixture_gains

    torch.manual_seed(0)
    a, b = torch.randn(2, 8000)
    est = torch.stack([3.0 * a + 0.1 * b, 0.2 * b])[None]  # too loud, too quiet
    g = mixture_gains(est, (a + b)[None])
    assert torch.allclose(
        g, torch.tensor([[1 / 3, (1 - 0.1 / 3) / 0.2]]), atol=1e-3
    )  # exact: a + b = g1 est1 + g2 est2
    same = mixture_gains(torch.stack([a + 0.5 * b, a])[None], (a + b)[None])  # least squares: 2 and -1
    assert torch.allclose(same, torch.full((1, 2), 2.5 / 4.25), atol=0.02), "one common gain: no output cancelled"
    flipped = mixture_gains(torch.stack([-2 * a, -0.5 * b])[None], (a + b)[None])  # SI-SDR ignores polarity too
    assert torch.allclose(flipped, torch.tensor([[-0.5, -2.0]]), atol=0.02)
    model = ConvTasNet(ConvTasNetConfig(**TINY))
    x = torch.randn(1, 1, 4000)
    model.eval()
    with torch.no_grad():
        scaled = model(x)
        model.config.mixture_gain = False
        raw = model(x)
    for s in range(2):
        assert abs(si_sdr(reference=raw[0, s, 0].numpy(), estimate=scaled[0, s, 0].numpy())) > 60
    err = lambda y: float((x[0, 0] - y[0, :, 0].sum(0)).pow(2).sum())  # noqa: E731
    assert err(scaled) <= err(raw) + 1e-6
