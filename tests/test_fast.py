"""``--fast``: int8 Linear layers, bf16 and engine settings per architecture (demixer.models.fast).

Fast output must stay within the stated fidelity of exact output on real music, the cached int8 weights
must be verified by their checksum, and the mode must reach the user through the CLI, batch and service.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from demixer.errors import OptionsError
from demixer.models import fast as fast_mod
from demixer.models.fast import FIDELITY_FLOOR_DB, FastModel, Int8Linear, make_fast
from demixer.models.htdemucs import HTDemucs, HTDemucsConfig
from demixer.models.roformer import BSRoformer, MelRoformer, RoformerConfig
from demixer.models.unet import UNet, UNetConfig
from demixer.options import SeparationOptions
from demixer.separation import Separator

from .conftest import run_cli, shared

SMALL_ROFORMER = dict(dim=64, depth=2, heads=4, dim_head=16, default_segment=2.0)


def real_music(seconds: float = 6.0) -> np.ndarray:
    """The held-out CC0 song caesium (sum of its stems) from 60 s on: ``[2, T]`` at 44.1 kHz."""
    folder = shared("music/train/caesium")
    parts = [
        sf.read(folder / f"{s}.ogg", dtype="float32", start=60 * 44100, frames=int(seconds * 44100), always_2d=True)[0]
        for s in ("vocals", "drums", "bass", "other")
    ]
    return np.ascontiguousarray(sum(parts).T)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((estimate - reference) ** 2)))


def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "bs_roformer": BSRoformer(RoformerConfig(sources=("vocals", "other"), **SMALL_ROFORMER)),
        "mel_roformer": MelRoformer(RoformerConfig(sources=("vocals",), num_bands=32, **SMALL_ROFORMER)),
        "htdemucs": HTDemucs(HTDemucsConfig(channels=16, depth=3, bottom_channels=64, t_layers=2, segment=2.0)),
    }


def test_int8_linear_is_close_to_the_float_layer():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 128)
    int8 = Int8Linear(*fast_mod.quantize_weight(linear.weight), linear.bias)
    x = torch.randn(4, 50, 256)
    with torch.inference_mode():
        want, got = linear(x), int8(x)
        assert got.dtype == torch.float32 and int8(x.bfloat16()).dtype == torch.bfloat16
    error = snr_db(want.numpy(), got.numpy())
    assert 30 < error < 80, error  # quantised (not the float layer), and close to it


@pytest.mark.parametrize("arch", ["bs_roformer", "mel_roformer", "htdemucs"])
def test_fast_output_stays_within_its_fidelity_on_real_music(arch):
    model = models()[arch].eval()
    music = real_music()
    exact = Separator(model=model).separate_tensor(music, 44100)
    separator = Separator(model=model, speed="fast")
    assert isinstance(separator.model, FastModel) and separator.model.int8_layers > 0
    assert not any(isinstance(m, Int8Linear) for m in model.modules())  # the model passed in is left as it is
    fast = separator.separate_tensor(music, 44100)
    for stem in model.sources:
        fidelity = snr_db(exact[stem].numpy(), fast[stem].numpy())
        assert FIDELITY_FLOOR_DB <= fidelity < 90, (stem, fidelity)  # close, and not the exact path run again


def test_the_int8_weights_are_cached_and_verified_by_checksum(tmp_path, monkeypatch, caplog):
    cache = tmp_path / "model.int8.safetensors"
    model = models()["bs_roformer"].eval()
    x = torch.from_numpy(real_music(2.0))[None]
    with torch.inference_mode():
        first = make_fast(model, "cpu", cache, copy_model=True)(x)
    sidecar = json.loads(cache.with_name(cache.name + ".sha256").read_text())
    assert sidecar["sha256"] == hashlib.sha256(cache.read_bytes()).hexdigest()

    derived = []
    original = fast_mod.quantize_weight
    monkeypatch.setattr(fast_mod, "quantize_weight", lambda w: derived.append(1) or original(w))
    with torch.inference_mode():
        again = make_fast(model, "cpu", cache, copy_model=True)(x)
    assert not derived and torch.equal(first, again)  # read from the cache, not derived again

    data = bytearray(cache.read_bytes())  # one int8 weight changed on disk
    data[-100] ^= 0x01
    cache.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="demixer"), torch.inference_mode():
        rebuilt = make_fast(model, "cpu", cache, copy_model=True)(x)
    assert derived and "does not match the recorded" in caplog.text
    assert torch.equal(first, rebuilt)
    assert json.loads(cache.with_name(cache.name + ".sha256").read_text())["sha256"] == sidecar["sha256"]

    derived.clear()  # other float weights under the same cache file: derived afresh, not taken from it
    with torch.no_grad():
        model.band_split.to_features[0][1].weight.add_(0.5)
    make_fast(model, "cpu", cache, copy_model=True)
    assert derived


def test_a_model_without_a_fast_mode_runs_exact():
    model = UNet(UNetConfig(sources=("vocals", "accompaniment"), channels=4, depth=2, max_bin=64)).eval()
    assert model.fast_recipe is None  # the U-Net has no fast mode
    assert make_fast(model) is model
    x = np.random.default_rng(0).standard_normal((2, 22050)).astype(np.float32) * 0.1
    a = Separator(model=model).separate_tensor(x, 44100)
    b = Separator(model=model, speed="fast").separate_tensor(x, 44100)
    assert all(torch.equal(a[s], b[s]) for s in a)


def test_fast_takes_the_recipes_engine_settings_and_the_user_overrides_them():
    model = models()["bs_roformer"].eval()
    fast = make_fast(model, copy_model=True)
    recipe = model.fast_recipe
    assert fast.default_overlap == recipe.overlap
    assert fast.default_segment == model.default_segment
    settings = Separator(model=model, speed="fast", overlap=0.3).settings
    assert settings.overlap == 0.3


def test_speed_option_and_the_fast_flag():
    from demixer.cli.options_parser import add_option_flags, options_from_args

    parser = argparse.ArgumentParser()
    add_option_flags(parser)
    assert options_from_args(parser.parse_args(["--fast"])).speed == "fast"
    assert options_from_args(parser.parse_args(["--speed", "exact"])).speed == "exact"
    assert options_from_args(parser.parse_args([])).speed == "exact"
    with pytest.raises(OptionsError, match="--speed"):
        SeparationOptions(speed="turbo")


def test_models_list_shows_the_measured_cost_of_fast(tmp_path, monkeypatch):
    from demixer.models.registry import describe_models

    monkeypatch.setenv("DEMIXER_CACHE_DIR", str(tmp_path))
    packaged = json.loads(fast_mod.PACKAGED_MEASUREMENTS.read_text())["architectures"]
    rows = {r["name"]: r for r in describe_models()}
    assert rows["htdemucs"]["fast"]["speedup"] == packaged["htdemucs"]["speedup"]
    assert "the machine this version was made on" in rows["htdemucs"]["fast"]["measured_on"]
    assert rows["hpss"]["fast"] is None
    fast_mod.write_measurements(fast_mod.measured_file(), {"htdemucs": {**packaged["htdemucs"], "speedup": 9.9}}, "x")
    assert {r["name"]: r for r in describe_models()}["htdemucs"]["fast"]["speedup"] == 9.9  # this machine's first


@pytest.mark.slow
def test_fast_through_the_cli_batch_and_service(tmp_path, monkeypatch):
    """A published RoFormer (a demixer checkpoint behind a file:// URL) run with --fast by `separate`, `batch` and
    the HTTP service: all three give the same fast output (one cached int8 copy), within its fidelity of exact."""
    from demixer.models.checkpoint import save_checkpoint

    from .test_serving import Server, submit, wait_done

    weights = save_checkpoint(models()["bs_roformer"], tmp_path / "tiny-bs.safetensors")
    blob = weights.read_bytes()
    entry = {
        "architecture": "bs_roformer",
        "format": "demixer",
        "sources": ["vocals", "other"],
        "sample_rate": 44100,
        "tasks": ["music"],
        "licence": "test",
        "description": "small random BS-RoFormer",
        "config": {},
        "files": [{"name": "tiny-bs.safetensors", "url": weights.as_uri(), "sha256": hashlib.sha256(blob).hexdigest()}],
    }
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"models": {"tiny-bs": entry}}))
    monkeypatch.setenv("DEMIXER_MANIFEST", str(manifest))
    monkeypatch.setenv("DEMIXER_CACHE_DIR", str(tmp_path / "cache"))
    assert run_cli("models", "download", "tiny-bs").returncode == 0
    song = tmp_path / "in" / "song.flac"
    song.parent.mkdir()
    sf.write(song, real_music(5.0).T, 44100, subtype="PCM_24")

    out = {}
    for speed in ("exact", "fast"):
        flag = ["--fast"] if speed == "fast" else []
        r = run_cli("separate", "-n", "tiny-bs", *flag, "--float32", "-o", tmp_path / speed, song)
        assert r.returncode == 0, r.stderr
        out[speed] = sf.read(tmp_path / speed / "tiny-bs" / "song" / "vocals.wav", dtype="float32")[0]
    assert FIDELITY_FLOOR_DB <= snr_db(out["exact"], out["fast"]) < 90
    cached = tmp_path / "cache" / "checkpoints" / "tiny-bs" / "tiny-bs.int8.safetensors"
    assert cached.is_file() and cached.with_name(cached.name + ".sha256").is_file()

    r = run_cli(
        "batch", tmp_path / "in", "-n", "tiny-bs", "--fast", "--float32", "-o", tmp_path / "batch", "--no-progress"
    )
    assert r.returncode == 0, r.stderr
    batch = sf.read(tmp_path / "batch" / "tiny-bs" / "song" / "vocals.wav", dtype="float32")[0]
    assert np.abs(batch - out["fast"]).max() < 1e-5

    server = Server(tmp_path / "data").start()
    try:
        assert submit(server, song, name="tiny-bs", speed="turbo").status_code == 422
        job = wait_done(server, submit(server, song, name="tiny-bs", speed="fast", float32="true").json()["id"], 300)
        assert job["state"] == "done", job
        import httpx

        body = httpx.get(f"{server.url}{job['urls']['stems']['vocals']}", timeout=30).content
        (tmp_path / "served.wav").write_bytes(body)
        served = sf.read(tmp_path / "served.wav", dtype="float32")[0]
        assert np.abs(served - out["fast"]).max() < 1e-5
    finally:
        server.stop()
    assert os.environ["DEMIXER_CACHE_DIR"] == str(tmp_path / "cache")
    assert Path(cached).is_file()
