"""The models the project trains and ships: cards, checksums, task defaults, and their quality on real audio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from demixer.audio import load_audio, probe, resample, save_audio
from demixer.errors import ModelNotFoundError
from demixer.evaluation import si_sdr
from demixer.models import default_model_for, list_models, load_model, task_defaults
from demixer.models.shipped import CARD_FORMAT, INFERENCE, read_card, shipped_cards

from .conftest import shared

ROOT = Path(__file__).resolve().parents[1]

CARDS = shipped_cards()
SHIPPED = {c.name: c for c in CARDS}


def needs(name: str):
    return pytest.mark.skipif(name not in SHIPPED, reason=f"{name} is not shipped in this version")


def test_something_ships():
    assert CARDS, "no trained model ships in the package"


TRAINED = [c for c in CARDS if "blend" not in c.data]
BLENDS = [c for c in CARDS if "blend" in c.data]


def _card_basics(card):
    d = card.data
    assert d["format"] == CARD_FORMAT
    model = card.load(load_model)  # checks the sha256 (a blend: each member's)
    assert list(model.sources) == d["sources"] and model.sample_rate == d["sample_rate"]
    assert card.facts == {
        "sources": list(model.sources),
        "sample_rate": model.sample_rate,
        "audio_channels": model.audio_channels,
    }, "what `models list` shows without loading"
    assert d["training"]["hardware"] and d["metrics"]["validation"]
    # held-out numbers: `demixer evaluate` folders, or a benchmark's (target-speaker extraction needs enrolments)
    assert d["metrics"]["evaluations"] or d["metrics"].get("benchmarks")
    assert d["known_weaknesses"], "a card must say what the model does badly"
    for task in card.tasks:
        assert task_defaults()[task] == card.name


@pytest.mark.parametrize("card", TRAINED, ids=lambda c: c.name)
def test_card_is_complete_and_weights_match(card):
    d = card.data
    assert card.weights.is_file() and card.weights.stat().st_size == d["bytes"] < 25 * 1024 * 1024
    _card_basics(card)
    assert d["training"]["shipped_step"] > 0 and d["training"]["config_file"].startswith("configs/")
    assert (ROOT / d["training"]["config_file"]).is_file()
    assert d["metrics"]["validation"]["at_shipped_step"]


@pytest.mark.parametrize("card", BLENDS, ids=lambda c: c.name)
def test_blend_card_names_shipped_members_and_the_validation_it_was_chosen_on(card):
    d = card.data
    _card_basics(card)
    members = d["blend"]["members"]
    assert abs(sum(members.values()) - 1) < 1e-6 and d["architecture"] == "blend"
    kinds = {entry.name: entry.kind for entry in list_models()}
    assert all(kinds.get(name) in ("trained", "dsp") for name in members), members
    for name, facts in d["training"]["members"].items():  # a trained member's card is the one shipped with it
        if facts["kind"] == "trained":
            assert facts["sha256"] == SHIPPED[name].data["sha256"]
    selection = d["metrics"]["validation"]["selection"]["rows"]
    chosen = members.get("demixer-4stem")
    best = max((r for r in selection if "validation" in r["set"]), key=lambda r: r["vocals_median_sdr"])
    assert best["weight_demixer_4stem"] == chosen, "the weights shipped are the best on the validation set"


@pytest.mark.parametrize("card", [c for c in TRAINED if "inference" in c.data], ids=lambda c: c.name)
def test_inference_defaults_are_the_validation_best(card):
    """A card's inference settings reach the model, and the one shipped is the best of its validation sweep."""
    d = card.data
    assert set(d["inference"]) <= set(INFERENCE)
    model = card.load()
    for key, value in d["inference"].items():
        assert getattr(model, INFERENCE[key]) == value
    if "atten_lim" in d["inference"]:
        rows = next(iter(d["metrics"]["validation"]["selection"].values()))  # one set: the validation speakers
        swept = {
            float(label.rsplit("atten-lim ", 1)[1].rstrip(")")): r["pesq_gain"]
            for label, r in rows.items()
            if "atten-lim" in label
        }
        assert len(swept) >= 3 and float("inf") in swept
        assert max(swept, key=swept.get) == d["inference"]["atten_lim"], swept


@pytest.mark.slow
def test_models_card_and_list_through_the_cli(cli):
    card = CARDS[0]
    r = cli("models", "card", card.name)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == card.data
    rows = {row["name"]: row for row in json.loads(cli("models", "list", "--json").stdout)}
    for c in CARDS:
        kind = "blend" if "blend" in c.data else "trained"
        assert rows[c.name]["kind"] == kind and set(rows[c.name]["default_for"]) == set(c.tasks)
    r = cli("models", "card", "hpss")
    assert r.returncode == 1 and "not a trained model" in r.stderr


def test_damaged_weights_are_refused(tmp_path):
    card = TRAINED[0]
    shutil.copy(card.path, tmp_path / card.path.name)
    data = bytearray(card.weights.read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / card.weights.name).write_bytes(bytes(data))
    with pytest.raises(ModelNotFoundError, match="sha256"):
        read_card(tmp_path / card.path.name).load()
    (tmp_path / card.path.name).write_text(json.dumps({"format": CARD_FORMAT, "name": "x"}))
    with pytest.raises(ModelNotFoundError, match="missing"):
        read_card(tmp_path / card.path.name)


def test_two_stems_vocals_takes_the_karaoke_model():
    assert default_model_for("music", "vocals") == task_defaults()["karaoke"]
    assert default_model_for("music", "drums") == task_defaults()["music"]


def _gains(items, *names):
    """Mean SI-SDR gain over the noisy input of each model, and the per-item gains. ``items``: (noisy, clean, rate)."""
    from demixer.separation import Separator

    out = {}
    for name in names:
        sep = Separator(name)
        out[name] = [
            si_sdr(reference=clean, estimate=sep.separate_tensor(noisy, sr)["speech"].numpy())
            - si_sdr(reference=clean, estimate=noisy)
            for noisy, clean, sr in items
        ]
    return out


@needs("demixer-denoise")
def test_denoiser_on_real_noisy_recordings():
    """The Valentini pairs: real noisy recordings of a speaker never trained on, hard for every method
    (DeepFilterNet3 gains 0.65 dB SI-SDR there). The shipped denoiser must improve every file and beat
    spectral gating on average."""
    items = []
    for noisy_path in sorted(shared("denoising_pairs").glob("*/noisy*/*")):
        clean_path = noisy_path.parent.parent / noisy_path.parent.name.replace("noisy", "clean") / noisy_path.name
        noisy, sr = load_audio(noisy_path)
        items.append((noisy, load_audio(clean_path)[0], sr))
    assert len(items) == 4
    g = _gains(items, "demixer-denoise", "spectral-gate")
    ours, gate = np.array(g["demixer-denoise"]), np.array(g["spectral-gate"])
    assert (ours > 0.2).all() and ours.mean() > 0.8, ours
    assert ours.mean() > gate.mean() + 0.3, (ours, gate)


@needs("demixer-denoise")
def test_denoiser_on_held_out_speakers_in_real_noise():
    """Held-out real speakers (VCTK, never trained on) over real noise recordings at -5..20 dB SNR
    (measured at shipping: 5.2 dB mean SI-SDR gain against 3.5 for spectral gating)."""
    from demixer.data.denoise import NoiseMixDataset

    ds = NoiseMixDataset(
        [shared("speech/vctk"), shared("speech/vctk_rtvc")],
        [shared("noise")],
        sample_rate=16000,
        segment=3.0,
        items=12,
        seed=11,
        validation=True,
    )
    items = []
    for i in range(len(ds)):
        src = ds.make(i, ds.rng(i))
        items.append((src.sum(0), src[0], 16000))
    g = _gains(items, "demixer-denoise", "spectral-gate")
    ours, gate = np.array(g["demixer-denoise"]), np.array(g["spectral-gate"])
    assert ours.mean() > 4.0 and ours.mean() > gate.mean() + 1.0, (ours.mean(), gate.mean())


@pytest.mark.slow
@needs("demixer-denoise")
def test_denoise_task_through_the_cli_at_48k(cli, tmp_path):
    noisy, sr = load_audio(sorted(shared("denoising_pairs").glob("*/noisy*/*"))[0])
    src = save_audio(tmp_path / "call.wav", resample(noisy, sr, 48000), 48000)
    r = cli("separate", "--task", "denoise", "-o", tmp_path / "o", src)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "o" / "demixer-denoise" / "call" / "speech.wav"
    info = probe(out)
    assert info.sample_rate == 48000 and info.frames == probe(src).frames


@pytest.mark.slow
@needs("demixer-denoise")
def test_denoise_default_noise_limit_and_inf_through_the_cli(cli, tmp_path):
    """Without --atten-lim the card's limit applies: the speech keeps 10^(-DB/20) of the noise the model found;
    --atten-lim inf gives the model's full removal. Both keep speech + noise = mixture."""
    limit = SHIPPED["demixer-denoise"].data["inference"]["atten_lim"]
    src = sorted(shared("denoising_pairs").glob("*/noisy*/*"))[0]
    out = {}
    for label, extra in (("default", ()), ("inf", ("--atten-lim", "inf"))):
        r = cli("separate", "--task", "denoise", "--float32", "-o", tmp_path / label, *extra, src)
        assert r.returncode == 0, r.stderr
        folder = tmp_path / label / "demixer-denoise" / src.stem
        out[label] = {stem: load_audio(folder / f"{stem}.wav")[0] for stem in ("speech", "noise")}
        np.testing.assert_allclose(out[label]["speech"] + out[label]["noise"], load_audio(src)[0], atol=1e-4)
    keep = 10 ** (-limit / 20)
    np.testing.assert_allclose(out["default"]["speech"], out["inf"]["speech"] + keep * out["inf"]["noise"], atol=1e-4)
    assert np.abs(out["inf"]["noise"]).max() > 0.01  # the model did remove something


@pytest.mark.slow
@needs("demixer-karaoke")
def test_karaoke_model_on_real_music_beats_the_training_free_ones(cli, tmp_path):
    """`--two-stems vocals` on a real MUSDB18 excerpt nobody trained on (music/valid, tests only, never shipped):
    the karaoke model's vocals above REPET-SIM's and well above centre extraction's (whole-excerpt SI-SDR; measured
    at shipping: see the card), and vocals + no_vocals give back the mixture."""
    from demixer.separation import Separator

    track = shared("music/valid/musdb18_easton_ellises_falcon69_excerpt")
    r = cli("separate", "--two-stems", "vocals", "-o", tmp_path / "o", track / "mixture.flac")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "o" / "demixer-karaoke" / "mixture"
    vocals_ref, sr = load_audio(track / "vocals.flac")
    mix, _ = load_audio(track / "mixture.flac")
    ours, rest = load_audio(out / "vocals.wav")[0], load_audio(out / "no_vocals.wav")[0]
    assert np.abs(ours + rest - mix).max() < 1e-3  # 16-bit files: a few LSB
    baselines = {name: Separator(name).separate_tensor(mix, sr)["vocals"].numpy() for name in ("repet-sim", "center")}

    def sdr(est):
        return float(np.mean([si_sdr(reference=vocals_ref[c], estimate=est[c]) for c in range(2)]))

    assert sdr(ours) > sdr(baselines["repet-sim"]) + 0.3, (sdr(ours), sdr(baselines["repet-sim"]))
    assert sdr(ours) > sdr(baselines["center"]) + 1.0, (sdr(ours), sdr(baselines["center"]))


MUSDB_EXCERPT = "music/valid/musdb18_easton_ellises_falcon69_excerpt"
DRUMS_MARGIN = 3.0  # dB over HPSS: what issue 6 asks of a trained model over the training-free ones


def _music_sdr(ref, est) -> float:
    from demixer.evaluation import sdr

    return float(sdr(reference=ref, estimate=est))


@pytest.mark.slow
@needs("demixer-4stem")
def test_music_model_on_real_music_beats_the_training_free_separators(cli, tmp_path):
    """The default `demixer separate` on a real MUSDB18 song nobody trained on (music/valid, tests only): four stems
    at the input's rate, channels and length; drums far above HPSS's, vocals above REPET-SIM's (SDR over the
    whole excerpt; measured at shipping: see the card)."""
    from demixer.separation import Separator

    track = shared(MUSDB_EXCERPT)
    r = cli("separate", "-o", tmp_path / "o", track / "mixture.flac")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "o" / "demixer-4stem" / "mixture"
    mix, sr = load_audio(track / "mixture.flac")
    ours = {}
    for stem in ("vocals", "drums", "bass", "other"):
        info = probe(out / f"{stem}.wav")
        assert info.sample_rate == sr and info.channels == 2 and info.frames == mix.shape[1]
        ours[stem] = _music_sdr(load_audio(track / f"{stem}.flac")[0], load_audio(out / f"{stem}.wav")[0])
    refs = {s: load_audio(track / f"{s}.flac")[0] for s in ("vocals", "drums")}
    hpss = _music_sdr(refs["drums"], Separator("hpss").separate_tensor(mix, sr)["drums"].numpy())
    repet = _music_sdr(refs["vocals"], Separator("repet-sim").separate_tensor(mix, sr)["vocals"].numpy())
    assert ours["drums"] > hpss + DRUMS_MARGIN, (ours, hpss)
    assert ours["vocals"] > repet, (ours, repet)
    assert min(ours.values()) > 0.0, ours


HELD_OUT_TALKERS = (
    "speech/librispeech_rtvc",
    "speech/vctk",
    "speech/vctk_rtvc",
    "denoising_pairs/valentini_p287/clean",
)


@pytest.mark.slow
@needs("demixer-2spk")
def test_two_speaker_model_on_held_out_real_talkers():
    """Two real talkers nobody trained on, overlapping 30-100 % at -5..5 dB: the mixture itself is the only
    training-free estimate there is, so the model's permutation-invariant SI-SDR gain over it is the measure
    (measured on these 16 mixtures: stage 2, shipped until 2026-12-03: mean 4.36 dB, median 6.02,
    worst -0.72; stage 3, shipped since: mean 4.51, median 5.93, worst -0.90)."""
    from itertools import permutations

    from demixer.data import SpeakerMixDataset
    from demixer.separation import Separator

    ds = SpeakerMixDataset(
        [shared(p) for p in HELD_OUT_TALKERS],
        speakers=2,
        sample_rate=8000,
        segment=4.0,
        overlap=(0.3, 1.0),
        items=16,
        seed=11,
        validation=True,
    )
    sep = Separator("demixer-2spk")
    gains = []
    for i in range(len(ds)):
        src = ds.make(i, ds.rng(i))[:, 0]
        mix = src.sum(0)
        out = sep.separate_tensor(mix[None], 8000)
        est = [out[s].numpy()[0] for s in ("speaker1", "speaker2")]
        best = max(
            np.mean([si_sdr(reference=src[k], estimate=est[p]) for k, p in enumerate(perm)])
            for perm in permutations(range(2))
        )
        gains.append(best - np.mean([si_sdr(reference=src[k], estimate=mix) for k in range(2)]))
    assert np.mean(gains) > 2.5 and np.median(gains) > 2.0, gains


@pytest.mark.slow
@needs("demixer-2spk")
def test_speakers_task_through_the_cli(cli, tmp_path):
    a, _ = load_audio(sorted(shared("speech/vctk").glob("*"))[0], sample_rate=16000)
    b, _ = load_audio(sorted(shared("speech/librispeech_rtvc").glob("*"))[0], sample_rate=16000)
    n = min(a.shape[1], b.shape[1])
    src = save_audio(tmp_path / "two.wav", a[:, :n] + b[:, :n], 16000)
    r = cli("separate", "--task", "speakers", "-o", tmp_path / "o", src)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "o" / "demixer-2spk" / "two"
    for name in ("speaker1", "speaker2"):
        info = probe(out / f"{name}.wav")
        assert info.sample_rate == 16000 and info.frames == n


def test_tiny_random_is_reproducible_and_leaves_the_global_seed_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = load_model("tiny-random")
    assert torch.equal(torch.rand(3), expected), "building tiny-random must not reseed the caller's generator"
    second = load_model("tiny-random")
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_models_list_reads_cards_without_loading_weights(monkeypatch):
    from demixer.models import checkpoint, registry

    def refuse(*args, **kwargs):
        raise AssertionError("describe_models loaded a checkpoint")

    monkeypatch.setattr(checkpoint, "load_checkpoint", refuse)
    monkeypatch.setattr("demixer.models.shipped.load_checkpoint", refuse)
    rows = {r["name"]: r for r in registry.describe_models(published=False)}
    for card in shipped_cards():
        assert rows[card.name]["sources"] == card.data["sources"] and rows[card.name]["audio_channels"] in (1, 2)
