"""BS-RoFormer and Mel-RoFormer: state dicts of the `bs-roformer` 0.3.10 package load unchanged and give
the same output; shapes, gradients, checkpoints."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from demixer.models.checkpoint import build_model, load_checkpoint, save_checkpoint
from demixer.models.roformer import BSRoformer, MelRoformer, RoformerConfig, mel_band_membership

ref_pkg = pytest.importorskip("bs_roformer")
BANDS = (2,) * 24 + (8,) * 20 + (128,) + (177,)  # sums to 513 bins (n_fft 1024)
SMALL = dict(dim=32, depth=2, time_transformer_depth=1, freq_transformer_depth=1, dim_head=16, heads=2)


def _ref_kwargs(mask_depth: int) -> dict:
    return dict(**SMALL, stft_n_fft=1024, stft_hop_length=256, stft_win_length=1024, mask_estimator_depth=mask_depth)


def _ours(cls, **kw) -> torch.nn.Module:
    return cls(RoformerConfig(**SMALL, n_fft=1024, hop_length=256, win_length=1024, **kw)).eval()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("stereo,stems", [(True, 2), (False, 1)])
def test_bs_roformer_parity(stereo, stems):
    torch.manual_seed(stems)
    ref = ref_pkg.BSRoformer(stereo=stereo, num_stems=stems, freqs_per_bands=BANDS, **_ref_kwargs(2)).eval()
    ours = _ours(
        BSRoformer,
        sources=tuple(f"s{i}" for i in range(stems)),
        audio_channels=2 if stereo else 1,
        mask_estimator_depth=2,
        freqs_per_bands=BANDS,
    )
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 2 if stereo else 1, 256 * 50)
    with torch.no_grad():
        a, b = ref(x), ours(x)
    a = a if stems > 1 else a[:, None]
    assert b.shape == a.shape
    assert (a - b).abs().max() < 1e-4


@pytest.mark.parametrize("stereo,stems", [(True, 1), (False, 2)])
def test_mel_roformer_parity(stereo, stems):
    torch.manual_seed(10 + stems)
    ref = ref_pkg.MelBandRoformer(
        stereo=stereo,
        num_stems=stems,
        num_bands=32,
        sample_rate=44100,
        attn_dropout=0.0,
        ff_dropout=0.0,
        **_ref_kwargs(1),
    ).eval()
    ours = _ours(
        MelRoformer,
        sources=tuple(f"s{i}" for i in range(stems)),
        audio_channels=2 if stereo else 1,
        mask_estimator_depth=1,
        num_bands=32,
    )
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 2 if stereo else 1, 256 * 60)
    with torch.no_grad():
        a, b = ref(x), ours(x)
    a = a if stems > 1 else a[:, None]
    assert (a - b).abs().max() < 1e-4


def test_published_config_key_layout():
    """The viperx-317 BS-RoFormer and Kim Mel-RoFormer configs give the reference's keys and shapes
    (checked with depth 1 to stay small: deeper models repeat the same blocks)."""
    viperx = dict(dim=512, depth=1, time_transformer_depth=1, freq_transformer_depth=1, dim_head=64, heads=8)
    bands = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
    ref = ref_pkg.BSRoformer(
        **viperx, stereo=True, num_stems=1, freqs_per_bands=bands, stft_hop_length=441, mask_estimator_depth=2
    )
    ours = BSRoformer(RoformerConfig(**viperx, freqs_per_bands=bands, hop_length=441, mask_estimator_depth=2))
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    kim = dict(dim=384, depth=1, time_transformer_depth=1, freq_transformer_depth=1, dim_head=64, heads=8)
    ref = ref_pkg.MelBandRoformer(
        **kim, stereo=True, num_stems=1, num_bands=60, stft_hop_length=441, mask_estimator_depth=2
    )
    ours = MelRoformer(RoformerConfig(**kim, num_bands=60, hop_length=441, mask_estimator_depth=2))
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}


def test_mel_bands_match_librosa():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, bands in ((44100, 2048, 60), (44100, 1024, 32), (16000, 512, 24), (48000, 2048, 64)):
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=bands) > 0
        ref[0, 0] = ref[-1, -1] = True
        assert np.array_equal(ref, mel_band_membership(sr, n_fft, bands)), (sr, n_fft, bands)


def test_shapes_gradients_and_checkpoint(tmp_path):
    model = build_model(
        "bs_roformer",
        {
            **SMALL,
            "sources": ["vocals", "other"],
            "n_fft": 1024,
            "hop_length": 256,
            "win_length": 1024,
            "freqs_per_bands": list(BANDS),
        },
    )
    x = torch.randn(1, 2, 5000, requires_grad=True)
    y = model(x)
    assert y.shape == (1, 2, 2, 5000)
    y.pow(2).mean().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    path = save_checkpoint(model.eval(), tmp_path / "bs.safetensors")
    again = load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(model(x.detach()), again(x.detach()))
    mel = build_model(
        "mel_roformer",
        {**SMALL, "n_fft": 1024, "hop_length": 256, "win_length": 1024, "num_bands": 16, "mask_estimator_depth": 1},
    )
    assert mel.eval()(torch.randn(1, 2, 300)).shape == (1, 1, 2, 300), "short inputs too (zero-padded frames)"


@pytest.mark.parametrize("cls,kw", [(BSRoformer, {"freqs_per_bands": BANDS}), (MelRoformer, {"num_bands": 32})])
def test_bounded_attention_groups_give_the_same_output(cls, kw):
    """Inference runs sequences in small groups written back in place; that must not change the result."""
    torch.manual_seed(3)
    model = _ours(cls, audio_channels=2, **kw)
    x = torch.randn(2, 2, 256 * 40)
    with torch.no_grad():
        whole = model(x)
    model.attention_budget = 1  # one sequence at a time
    with torch.no_grad():
        grouped = model(x)
    with_grad = model(x)  # eval with autograd on: grouped, not in place
    assert (grouped - whole).abs().max() < 1e-5
    assert (with_grad.detach() - whole).abs().max() < 1e-5
    with_grad.sum().backward()
    assert model.band_split.parameters().__next__().grad is not None


@pytest.mark.parametrize("cls", [BSRoformer, MelRoformer])
def test_mapped_weights_give_the_same_output(cls, tmp_path):
    """Checkpoints load as views of the memory-mapped file; the mask MLPs are paged out after each use."""
    cfg = RoformerConfig(
        dim=32,
        depth=1,
        dim_head=16,
        heads=2,
        n_fft=512,
        hop_length=128,
        win_length=512,
        freqs_per_bands=(128, 129),
        num_bands=8,
        mask_estimator_depth=2,
    )
    torch.manual_seed(0)
    model = cls(cfg).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    mapped = load_checkpoint(path)
    plain = load_checkpoint(path, mapped=False)
    mm = mapped._mapped_weights.map
    import ctypes

    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    for name, p in mapped.named_parameters():
        assert base <= p.data_ptr() < base + len(mm), f"{name} is a copy"
    assert not hasattr(plain, "_mapped_weights")
    x = 0.2 * torch.randn(1, 2, 8000)
    with torch.inference_mode():
        unfused_mapped, unfused_plain = mapped(x), plain(x)
        mapped.fuse_for_inference(), plain.fuse_for_inference()  # as the engine runs them
        first, again, ref = mapped(x), mapped(x), plain(x)  # the second run pages the released MLPs back in
    assert torch.equal(first, again) and torch.equal(first, ref)
    assert (unfused_mapped - unfused_plain).abs().max() < 1e-6  # the reference path: the same within rounding
