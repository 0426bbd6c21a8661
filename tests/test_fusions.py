"""Inference fusions (demixer.models.blocks.fusion): every architecture's fused output equals its reference
``forward`` output, fusions are switched on only by ``fuse_for_inference()``, never by grad mode."""

from __future__ import annotations

import pytest
import torch

from demixer.models.blocks.fusion import Fusable
from demixer.models.checkpoint import architectures, build_model

# Small configs of every registered architecture, and the fused modules each one must have.
CONFIGS: dict[str, tuple[dict, int, int, set[str]]] = {  # config, channels, samples, fused module classes
    "tiny_mask": ({"sources": ["a", "b"]}, 2, 8000, set()),
    "unet": (
        {"sources": ["a", "b"], "channels": 4, "depth": 2, "max_bin": 128, "n_fft": 512, "hop_length": 128},
        2,
        8000,
        set(),
    ),
    "bs_roformer": (
        {
            "sources": ["a", "b"],
            "dim": 32,
            "depth": 2,
            "dim_head": 16,
            "heads": 2,
            "n_fft": 1024,
            "hop_length": 256,
            "win_length": 1024,
            "freqs_per_bands": [64] * 8 + [1],
        },
        2,
        22050,
        {"BSRoformer"},
    ),
    "mel_roformer": (
        {
            "sources": ["a"],
            "dim": 32,
            "depth": 1,
            "dim_head": 16,
            "heads": 2,
            "n_fft": 1024,
            "hop_length": 256,
            "win_length": 1024,
            "num_bands": 16,
        },
        2,
        22050,
        {"MelRoformer"},
    ),
    "denoiser": ({"sample_rate": 16000}, 1, 16000, set()),
    "speaker_denoiser": ({"sample_rate": 16000}, 1, 16000, set()),
    "convtasnet": (
        {
            "sources": ["s1", "s2"],
            "filters": 32,
            "kernel": 16,
            "bottleneck": 16,
            "hidden": 32,
            "blocks": 3,
            "repeats": 2,
        },
        1,
        8000,
        {"TCNBlock"},
    ),
    "speaker_extractor": (
        {
            "sample_rate": 16000,
            "filters": 32,
            "bottleneck": 16,
            "hidden": 32,
            "blocks": 3,
            "repeats": 2,
            "speaker_dim": 16,
            "encoder_channels": 16,
            "encoder_layers": 2,
            "n_mels": 20,
        },
        1,
        16000,
        {"TCNBlock"},
    ),
    "open_unmix": (
        {
            "sources": ["vocals", "other"],
            "n_fft": 512,
            "hop_length": 128,
            "hidden_size": 16,
            "max_bin": 128,
            "wiener_window": 20,
        },
        2,
        16000,
        {"OpenUnmix"},
    ),
    "htdemucs": (
        {
            "channels": 8,
            "depth": 4,
            "bottom_channels": 32,
            "t_layers": 2,
            "t_heads": 4,
            "segment": 1.0,
            "norm_starts": 2,
            "nfft": 1024,
        },
        2,
        44100,
        {"DConv", "ConvGLU"},
    ),
}


def test_every_architecture_has_a_fusion_case():
    assert set(CONFIGS) == set(architectures())


def _randomised(architecture: str) -> torch.nn.Module:
    config, *_ = CONFIGS[architecture]
    torch.manual_seed(0)
    model = build_model(architecture, config).eval()
    with torch.no_grad():  # trained-looking weights: no all-ones norms, no zero layer scales
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    if hasattr(model, "enroll"):
        model.enroll(torch.randn(16000 * 2).numpy(), 16000)
    return model


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_fused_output_equals_reference_output(architecture):
    _, channels, samples, expected = CONFIGS[architecture]
    model = _randomised(architecture)
    torch.manual_seed(1)
    mix = 0.3 * torch.randn(2, channels, samples)
    with torch.inference_mode():
        reference = model(mix)
    model.fuse_for_inference()
    fused_modules = {type(m).__name__ for m in model.modules() if isinstance(m, Fusable) and m.fused}
    assert fused_modules == expected, "the fused paths this test exercises"
    with torch.inference_mode():
        fused = model(mix)
    assert fused.shape == reference.shape
    peak = reference.abs().max().item()
    assert (fused - reference).abs().max().item() <= 1e-5 * max(peak, 1.0)
    if expected:  # a fused path refuses to run where autograd records, and unfuse() goes back to the reference
        with pytest.raises(RuntimeError, match="fused for inference"):
            model(mix)
        model.unfuse()
        with torch.no_grad():
            assert torch.equal(model(mix), reference)


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_eval_output_does_not_depend_on_grad_mode(architecture):
    """Open-Unmix gave other output in eval mode with gradients on (no Wiener filter): no model may."""
    _, channels, samples, _ = CONFIGS[architecture]
    model = _randomised(architecture)
    mix = 0.3 * torch.randn(1, channels, samples)
    with torch.no_grad():
        without = model(mix)
    with_grad = model(mix).detach()
    assert (with_grad - without).abs().max().item() <= 1e-6 * max(without.abs().max().item(), 1.0)
