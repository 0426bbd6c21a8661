"""Published architectures against their reference packages, same random weights, same input.

- Open-Unmix vs ``openunmix`` 1.3.0 (its Separator with the Wiener post-filter). The package imports
  torchaudio by name only (its STFT is torch's); torchaudio cannot be installed beside CPU torch
  here (see NOTES), so an empty module stands in for it while the reference is imported.
- HTDemucs vs ``demucs`` 4.1.0, at a small config and at the published ``htdemucs`` config; a
  Demucs package file (half-precision state, as published) read through the weights-only loader.
- A bag of HTDemucs vs ``demucs.apply.apply_model`` on a ``BagOfModels``.
- A RoFormer community checkpoint file (state dict) through the manifest's ``roformer-ckpt`` reader.
"""

from __future__ import annotations

import sys
import types
from fractions import Fraction

import pytest
import torch

from demixer.models.htdemucs import HTDemucs, HTDemucsBag, HTDemucsConfig
from demixer.models.open_unmix import OpenUnmix, OpenUnmixConfig
from demixer.models.published import build_demucs, build_roformer, build_umx

TOL = 1e-4


@pytest.fixture(scope="module")
def openunmix():
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # imported by name only, never used
    return pytest.importorskip("openunmix.model")


def _randomise_umx(net: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics and scales, so folding them is tested."""
    for bn in (net.bn1, net.bn2, net.bn3):
        bn.running_mean.normal_(0, 0.1)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.normal_(1, 0.2)
        bn.bias.data.normal_(0, 0.1)
    net.input_mean.data.normal_(0, 0.1)
    net.input_scale.data.uniform_(0.5, 2.0)
    net.output_scale.data.uniform_(0.5, 2.0)
    net.output_mean.data.normal_(1, 0.2)


@pytest.mark.parametrize("channels,wiener", [(2, 1), (1, 1), (2, 0)])
def test_open_unmix_matches_reference(openunmix, tmp_path, channels, wiener):
    torch.manual_seed(0)
    targets = ("vocals", "drums", "other")
    ref_nets = {}
    for t in targets:
        net = openunmix.OpenUnmix(nb_bins=1025, nb_channels=channels, hidden_size=32, max_bin=700)
        _randomise_umx(net)
        ref_nets[t] = net.eval()
    ref = openunmix.Separator(
        ref_nets, niter=wiener, n_fft=2048, n_hop=512, nb_channels=channels, sample_rate=44100.0, wiener_win_len=300
    ).eval()
    files = {}
    for t, net in ref_nets.items():  # through the published format: one state dict file per target
        files[t] = tmp_path / f"{t}.pth"
        torch.save(net.state_dict(), files[t])
    ours = build_umx(
        targets,
        44100,
        {
            "audio_channels": channels,
            "n_fft": 2048,
            "hop_length": 512,
            "hidden_size": 32,
            "max_bin": 700,
            "wiener_iterations": wiener,
        },
        files,
    )
    x = 0.3 * torch.randn(1, channels, 44100 * 8 + 123)  # > 300 frames: several Wiener windows
    with torch.inference_mode():
        a, b = ref(x), ours(x)
    assert a.shape == b.shape == (1, 3, channels, x.shape[-1])
    assert (a - b).abs().max() < TOL


def test_open_unmix_gradients_flow():
    model = OpenUnmix(
        OpenUnmixConfig(sources=("a", "b"), n_fft=512, hop_length=128, hidden_size=16, max_bin=128)
    ).train()
    x = torch.randn(2, 2, 4096, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def demucs():
    return pytest.importorskip("demucs.htdemucs")


SMALL = dict(
    channels=8, depth=4, bottom_channels=32, t_layers=3, t_heads=4, segment=Fraction(2, 1), norm_starts=2, dconv_mode=3
)
PUBLISHED = dict(
    channels=48,
    growth=2,
    nfft=4096,
    depth=4,
    dconv_mode=3,
    dconv_depth=2,
    dconv_comp=8,
    dconv_init=1e-3,
    bottom_channels=512,
    t_layers=5,
    t_heads=8,
    t_hidden_scale=4.0,
    t_layer_scale=True,
    t_gelu=True,
    segment=Fraction(39, 5),
    samplerate=44100,
    freq_emb=0.2,
    norm_starts=4,
    norm_groups=4,
)
SOURCES = ["drums", "bass", "other", "vocals"]


def _reference_htdemucs(demucs, kwargs, seed=0):
    torch.manual_seed(seed)
    ref = demucs.HTDemucs(sources=SOURCES, **kwargs).eval()
    for name, p in ref.named_parameters():  # the layer scales start near zero: make every branch count
        if name.endswith("scale"):
            p.data.normal_(0, 0.5)
    return ref


def _package(ref) -> dict:
    """A Demucs model package as ``demucs.states.serialize_model`` writes it (half-precision state)."""
    return {
        "klass": type(ref),
        "args": (),
        "kwargs": dict(ref._init_args_kwargs[1], sources=SOURCES),
        "state": {k: v.half() for k, v in ref.state_dict().items()},
        "training_args": {},
    }


@pytest.mark.parametrize(
    "kwargs", [SMALL, pytest.param(PUBLISHED, marks=pytest.mark.slow)], ids=["small", "published-htdemucs"]
)
def test_htdemucs_matches_reference(demucs, kwargs):
    ref = _reference_htdemucs(demucs, kwargs)
    ours = HTDemucs(HTDemucsConfig.from_demucs(SOURCES, ref._init_args_kwargs[1])).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    full = int(float(kwargs["segment"]) * 44100)
    for length in (full, full - 9999):  # the training length, and a shorter input (zero-padded by both)
        x = 0.2 * torch.randn(1, 2, length)
        with torch.inference_mode():
            a, b = ref(x), ours(x)
        assert a.shape == b.shape == (1, 4, 2, length)
        assert (a - b).abs().max() < TOL


def test_demucs_package_loads_weights_only(demucs, tmp_path):
    ref = _reference_htdemucs(demucs, SMALL)
    pkg = _package(ref)
    path = tmp_path / "abcd1234-00000000.th"
    torch.save(pkg, path)
    ref.load_state_dict(pkg["state"])  # the reference widens the half state the same way
    ours = build_demucs([path])
    assert isinstance(ours, HTDemucs) and ours.sources == tuple(SOURCES) and ours.default_segment == 2.0
    x = 0.2 * torch.randn(1, 2, 60000)
    with torch.inference_mode():
        assert (ref(x) - ours(x)).abs().max() < TOL


def test_unsupported_demucs_setting_is_named(demucs):
    with pytest.raises(ValueError, match="t_emb='cape'"):
        HTDemucsConfig.from_demucs(SOURCES, dict(SMALL, t_emb="cape"))


def test_bag_matches_apply_model(demucs, tmp_path):
    from demucs.apply import BagOfModels, apply_model

    refs = [_reference_htdemucs(demucs, SMALL, seed) for seed in (1, 2)]
    weights = [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]]
    paths = []
    for i, ref in enumerate(refs):
        paths.append(tmp_path / f"m{i}.th")
        torch.save(_package(ref), paths[-1])
        ref.load_state_dict(_package(ref)["state"])
    bag = BagOfModels(refs, weights)
    ours = build_demucs(paths, weights)
    assert isinstance(ours, HTDemucsBag)
    x = 0.2 * torch.randn(1, 2, int(2.0 * 44100))
    with torch.inference_mode():
        a = apply_model(bag, x, shifts=0, split=False, progress=False)
        b = ours(x)
    assert (a - b).abs().max() < TOL


def test_roformer_checkpoint_file(tmp_path):
    bsr = pytest.importorskip("bs_roformer")
    torch.manual_seed(0)
    bands = (64, 65)
    ref = bsr.BSRoformer(
        dim=32,
        depth=1,
        stereo=True,
        num_stems=1,
        time_transformer_depth=1,
        freq_transformer_depth=1,
        freqs_per_bands=bands,
        dim_head=16,
        heads=2,
        stft_n_fft=256,
        stft_hop_length=64,
        stft_win_length=256,
        mask_estimator_depth=2,
    ).eval()
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in ref.state_dict().items()}}, path)  # a Lightning-style file
    ours = build_roformer(
        "bs_roformer",
        ("vocals",),
        44100,
        {
            "dim": 32,
            "depth": 1,
            "freqs_per_bands": list(bands),
            "dim_head": 16,
            "heads": 2,
            "n_fft": 256,
            "hop_length": 64,
            "win_length": 256,
            "mask_estimator_depth": 2,
        },
        path,
    )
    x = 0.2 * torch.randn(1, 2, 8192)
    with torch.inference_mode():
        a, b = ref(x), ours(x)
    assert (a.reshape(b.shape) - b).abs().max() < TOL
