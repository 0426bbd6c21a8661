"""Training: configs and their errors, losses, the CLI end to end, exact resume, DDP, logs."""

from __future__ import annotations

import csv
import itertools
import math
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from demixer.evaluation.metrics import si_sdr
from demixer.models.checkpoint import build_model, read_metadata
from demixer.training import ConfigError, TrainingLoss, load_config, pit_loss
from demixer.training.losses import (
    ActiveWindowSDR,
    CompressedSpectral,
    MultiResolutionSTFT,
    WindowedSDR,
    neg_sdr,
    neg_si_sdr,
    window_sdr,
)
from demixer.training.trainer import Trainer, train

from .conftest import ROOT, assert_learned, run_cli, shared, speaker_training_config

TINY = str(ROOT / "configs" / "tiny-test.yaml")
QUIET = ["train.progress=false", "train.tensorboard=false"]


def _stems_config(tmp_path, *extra):
    return load_config(TINY, [f"data.train=[{shared('music/train')}]", f"train.out={tmp_path / 'run'}", *QUIET, *extra])


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, ["optim.lrr=0.1", "schedule.epochs=0", "data.augment.polarity=3", "loss.terms={l2: 1}"])
    msg = str(e.value)
    assert "optim.lrr: unknown key (did you mean 'lr'?)" in msg
    assert "schedule.epochs" in msg and "data.augment.polarity" in msg and "unknown loss term 'l2'" in msg
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(TINY, ["optim.lr"])
    with pytest.raises(ConfigError, match="extra_p is 0"):
        load_config(TINY, ["data.extra={vocals: [somewhere]}"])
    with pytest.raises(ConfigError, match="for stems data"):
        load_config(TINY, ["data.kind=speakers", "data.extra={vocals: [somewhere]}", "data.extra_p=0.5"])


def test_bad_data_and_model_are_config_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = load_config(TINY, [f"data.train=[{tmp_path / 'empty'}]", f"train.out={tmp_path / 'run'}", *QUIET])
    with pytest.raises(ConfigError, match="no tracks found"):
        Trainer(cfg)
    cfg = _stems_config(tmp_path, "data.holdout=[nosuchtrack]")
    with pytest.raises(ConfigError, match="nosuchtrack"):
        Trainer(cfg)
    cfg = _stems_config(tmp_path, "model.config.channelz=3")
    with pytest.raises(ConfigError, match="channelz"):
        Trainer(cfg)


@pytest.mark.slow
def test_cli_config_error_exit_code(tmp_path):
    r = run_cli("train", "-c", TINY, "optim.lr=-1", "--check")
    assert r.returncode == 2 and "optim.lr" in r.stderr and "greater than 0" in r.stderr


def test_pit_finds_the_permutation():
    torch.manual_seed(0)
    ref = torch.randn(3, 3, 1, 800)
    est = ref[:, [2, 0, 1]] + 0.01 * torch.randn(3, 3, 1, 800)
    loss = TrainingLoss({"si_sdr": 1.0}, pit=True)
    value, perm = pit_loss(loss.per_item, reference=ref, estimate=est)
    assert perm.tolist() == [[1, 2, 0]] * 3
    assert float(value) < -35
    assert float(TrainingLoss({"si_sdr": 1.0})(est, ref)) > 0, "without PIT the wrong order is penalised"
    best = min(float(TrainingLoss({"si_sdr": 1.0})(est[:, list(p)], ref)) for p in itertools.permutations(range(3)))
    assert math.isclose(float(value), best, rel_tol=1e-5)


def test_losses_agree_with_metrics_and_survive_silence():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 1, 2, 4000)).astype(np.float32)
    est = ref + 0.3 * rng.standard_normal(ref.shape).astype(np.float32)
    ours = -float(neg_si_sdr(torch.from_numpy(est), torch.from_numpy(ref)))
    assert abs(ours - si_sdr(reference=ref[0, 0], estimate=est[0, 0])) < 1e-3
    silent = torch.zeros(1, 2, 2, 4000)
    for terms in (
        {"l1_wave": 1},
        {"l1_spec": 1},
        {"mrstft": 1},
        {"cspec": 1},
        {"si_sdr": 1},
        {"sdr": 1},
        {"sdr_win": 1},
        {"l1_wave": 1, "sdr_active": 0.02},
    ):
        value = TrainingLoss(terms)(torch.randn(1, 2, 2, 4000, requires_grad=True), silent)
        assert torch.isfinite(value), terms
    assert torch.isfinite(MultiResolutionSTFT()(silent + 0.1, silent)).all()


def test_compressed_spectral_loss_weighs_quiet_residual_noise_and_has_finite_gradients_at_silence():
    rng = np.random.default_rng(2)
    speech = torch.from_numpy(rng.standard_normal((1, 1, 1, 8000)).astype(np.float32))
    speech[..., 4000:] = 0  # the talker stops
    loud_error = speech.clone()
    loud_error[..., :4000] *= 1.2  # a 1.6 dB level error where the speech is
    quiet_residual = speech.clone()
    quiet_residual[..., 4000:] += 0.01 * torch.randn(1, 1, 1, 4000)  # noise left at -40 dB after the speech
    loss = CompressedSpectral()
    assert float(loss(speech, speech)) < 1e-6
    # the waveform error of the residual is 30x smaller, yet the compressed spectra weigh it more
    assert (quiet_residual - speech).pow(2).sum() < (loud_error - speech).pow(2).sum() / 30
    assert float(loss(quiet_residual, speech)) > float(loss(loud_error, speech))
    quieter, louder = speech * 0.8, speech * 1.25  # the same error in dB, below and above the reference
    asym = CompressedSpectral(under=3.0)
    assert abs(float(loss(quieter, speech)) - float(asym(quieter, speech))) > 1e-6  # only under-estimates cost more
    assert float(asym(louder, speech)) == pytest.approx(float(loss(louder, speech)))
    assert float(asym(quieter, speech)) > 2 * float(loss(quieter, speech))
    silent = torch.zeros(1, 1, 1, 4000, requires_grad=True)
    loss(silent, torch.zeros(1, 1, 1, 4000)).sum().backward()
    assert torch.isfinite(silent.grad).all()


def test_windowed_sdr_pays_for_what_leaks_into_a_silent_window():
    rng = np.random.default_rng(1)
    ref = torch.from_numpy(rng.standard_normal((1, 2, 2, 3000)).astype(np.float32))
    ref[:, 0, :, 1000:2000] = 0  # source 0 silent in the middle window
    loss = WindowedSDR(window=1000, floor_db=-30)
    exact = loss(ref.clone(), ref)
    leaky = ref.clone()
    leaky[:, 0, :, 1000:2000] += 0.1 * ref[:, 1, :, 1000:2000]  # -20 dB of the mixture leaks in
    # the silent window goes from 0 dB to about -10 log10((0.01 + 0.001) / 0.001) = -10.4 dB: +3.5 dB on the mean of 3
    assert abs(float(loss(leaky, ref)[0, 0] - exact[0, 0]) - 10.41 / 3) < 0.05
    assert float(loss(leaky, ref)[0, 1] - exact[0, 1]) == 0.0  # the other source's windows are untouched
    # one window and a negligible floor: plain SDR
    est = ref + 0.3 * torch.from_numpy(rng.standard_normal(ref.shape).astype(np.float32))
    one = WindowedSDR(window=3000, floor_db=-90)(est, ref)
    assert torch.allclose(one, neg_sdr(est, ref), atol=1e-3)


def test_active_window_sdr_scores_only_the_windows_where_the_source_plays():
    rng = np.random.default_rng(3)
    ref = torch.from_numpy(rng.standard_normal((1, 2, 2, 3000)).astype(np.float32))
    ref[:, 0, :, 1000:2000] = 0  # source 0 silent in the middle window
    est = ref + 0.3 * torch.from_numpy(rng.standard_normal(ref.shape).astype(np.float32))
    loss = ActiveWindowSDR(window=1000, floor_db=-90, active_db=-30)
    base = loss(est, ref)
    leaky = est.clone()
    leaky[:, 0, :, 1000:2000] += 0.1 * ref[:, 1, :, 1000:2000]
    assert float(loss(leaky, ref)[0, 0]) == float(base[0, 0]), (
        "leakage into a silent window is not this term's business"
    )
    # the silent window is left out of the mean, not counted as 0 dB: the mean of the two active windows' SDR
    parts = [(slice(None), slice(0, 1), slice(None), slice(1000 * w, 1000 * (w + 1))) for w in (0, 2)]
    expected = torch.stack([neg_sdr(est[p], ref[p])[0, 0] for p in parts]).mean()
    assert torch.allclose(base[0, 0], expected, atol=1e-3)
    # a source 40 dB under the mixture in a window is not active there either; one never active adds nothing
    quiet = ref.clone()
    quiet[:, 0] *= 0.01
    assert float(loss(est, quiet)[0, 0]) == 0.0


def test_window_sdr_leaves_silent_windows_out():
    rng = np.random.default_rng(2)
    ref = torch.from_numpy(rng.standard_normal((1, 2, 2, 3000)).astype(np.float32))
    ref[:, 0, :, 1000:2000] = 0
    est = ref + 0.1 * torch.from_numpy(rng.standard_normal(ref.shape).astype(np.float32))
    sdr = window_sdr(est, ref, 1000, silent=1e-8)
    assert sdr.shape == (1, 2, 3)
    assert torch.isnan(sdr[0, 0, 1]) and int(torch.isnan(sdr).sum()) == 1  # museval leaves such windows out
    for w in (0, 2):  # every other window: plain SDR of that window
        part = (slice(None), slice(None), slice(None), slice(1000 * w, 1000 * (w + 1)))
        assert torch.allclose(sdr[..., w], -neg_sdr(est[part], ref[part]), atol=1e-3)


@pytest.mark.slow
def test_select_by_window_median_and_a_changed_select_starts_a_new_best(tmp_path):
    """Validation logs the median SDR over 1 s windows; ``train.select`` picks the metric for best.safetensors,
    and a resume that changes it does not compare the new metric with the old best."""
    import shutil

    common = ["data.items_per_epoch=8", "data.segment=2.0"]
    first = train(_stems_config(tmp_path, *common, "schedule.epochs=1"))
    row = list(csv.DictReader((tmp_path / "run" / "valid.csv").open()))[-1]
    medians = [
        float(row[f"sdr_median_{s}"]) for s in ("vocals", "drums", "bass", "other") if row.get(f"sdr_median_{s}")
    ]
    assert medians and math.isclose(float(row["sdr_median"]), float(np.mean(medians)), abs_tol=1e-4)
    assert math.isclose(first.best_score, float(row["sdr"]), abs_tol=1e-4)  # auto: whole-segment SDR for stems
    state_path = tmp_path / "run" / "state.pt"
    state = torch.load(state_path, weights_only=True)
    state["best_score"] = torch.tensor(1e9)  # a best nothing can beat
    torch.save(state, state_path)
    shutil.copytree(tmp_path / "run", tmp_path / "changed" / "run")
    kept = train(_stems_config(tmp_path, *common, "schedule.epochs=2"), resume=True)
    assert (
        kept.best_score == 1e9
        and read_metadata(tmp_path / "run" / "best.safetensors")["extra"]["training"]["epoch"] == 1
    )
    changed = train(
        _stems_config(tmp_path / "changed", *common, "schedule.epochs=2", "train.select=sdr_median"), resume=True
    )
    row = list(csv.DictReader((tmp_path / "changed" / "run" / "valid.csv").open()))[-1]
    assert int(row["epoch"]) == 2 and math.isclose(changed.best_score, float(row["sdr_median"]), abs_tol=1e-4)
    assert read_metadata(tmp_path / "changed" / "run" / "best.safetensors")["extra"]["training"]["epoch"] == 2


@pytest.mark.slow
def test_train_cli_checkpoint_separates(tmp_path):
    """`demixer train` writes a checkpoint, logs and TensorBoard events; `demixer separate -n PATH` uses it."""
    out = tmp_path / "run"
    r = run_cli(
        "train",
        "-c",
        TINY,
        f"data.train=[{shared('music/train')}]",
        "--out",
        str(out),
        "train.progress=false",
        "train.log_every=2",
    )
    assert r.returncode == 0, r.stderr
    assert "training finished at epoch 2" in r.stdout
    for name in ("config.yaml", "last.safetensors", "best.safetensors", "state.pt", "train.csv", "valid.csv"):
        assert (out / name).exists(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((out / "valid.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(r["sdr_vocals"] for r in rows)
    meta = read_metadata(out / "best.safetensors")
    assert meta["architecture"] == "unet" and meta["extra"]["training"]["step"] in (4, 8)
    assert "sdr" in meta["extra"]["validation"]
    again = run_cli("train", "-c", TINY, f"data.train=[{shared('music/train')}]", "--out", str(out))
    assert again.returncode == 2 and "--resume" in again.stderr, "an existing run is never overwritten silently"
    sep = run_cli("separate", "-n", out / "best.safetensors", "--example", "-o", tmp_path / "sep")
    assert sep.returncode == 0, sep.stderr
    assert sorted(p.name for p in (tmp_path / "sep" / "run-best" / "example").iterdir()) == [
        "bass.wav",
        "drums.wav",
        "other.wav",
        "vocals.wav",
    ]


@pytest.mark.slow
def test_exact_resume_mid_epoch(tmp_path):
    """A run stopped after 3 steps and resumed ends with the same weights as an uninterrupted one."""
    common = ["data.items_per_epoch=8", "schedule.epochs=2", "model.config.dropout=0.5", "train.ema=0.9"]
    full = train(_stems_config(tmp_path / "a", *common), overwrite=True)
    cfg = _stems_config(tmp_path / "b", *common, "train.checkpoint_every_steps=1")
    t = Trainer(cfg)

    class Stop(Exception):
        pass

    save = t._save

    def stopping_save(*a, **k):
        save(*a, **k)
        if t.step == 3:
            raise Stop

    t._save = stopping_save
    with pytest.raises(Stop):
        t.fit()
    resumed = train(_stems_config(tmp_path / "b", *common), resume=True)
    assert resumed.step == full.step == 8
    a, b = load_file(full.last), load_file(resumed.last)
    assert a.keys() == b.keys()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) == 0.0
    assert (tmp_path / "a/run/valid.csv").read_text().splitlines()[1:] != []
    strip = lambda p: [line.split(",", 3)[-1] for line in p.read_text().splitlines()]  # noqa: E731  (drop timing)
    assert [r.split(",")[0] for r in (tmp_path / "b/run/valid.csv").read_text().splitlines()] == [
        r.split(",")[0] for r in (tmp_path / "a/run/valid.csv").read_text().splitlines()
    ]
    assert strip(tmp_path / "a/run/valid.csv") == strip(tmp_path / "b/run/valid.csv")


@pytest.mark.slow
def test_time_limit_stops_and_resume_continues(tmp_path):
    cfg = _stems_config(tmp_path, "train.max_minutes=0.0001", "data.items_per_epoch=8")
    r = train(cfg)
    assert not r.finished and r.step == 1
    r2 = train(_stems_config(tmp_path, "data.items_per_epoch=8"), resume=True)
    assert r2.finished and r2.step == 8


@pytest.mark.slow
def test_schedule_minutes_runs_the_cosine_over_time(tmp_path):
    """schedule.minutes: the run ends when the time is spent (epochs is only an upper bound), the epoch in
    progress is validated and saved, and the learning rate has come down the cosine to its floor."""
    cfg = _stems_config(
        tmp_path,
        "schedule.minutes=0.1",
        "schedule.epochs=100000",
        "schedule.min_lr_ratio=0.1",
        "data.items_per_epoch=8",
        "optim.lr=0.001",
        "train.log_every=1",
    )
    r = train(cfg)
    assert r.finished and 1 <= r.epoch < 100000 and r.seconds >= 6.0
    rows = list(csv.DictReader((tmp_path / "run/train.csv").open())) if (tmp_path / "run/train.csv").exists() else []
    valid = list(csv.DictReader((tmp_path / "run/valid.csv").open()))
    assert int(valid[-1]["step"]) == r.step  # the last, cut epoch was validated
    assert (tmp_path / "run/best.safetensors").exists()
    lrs = [float(row["lr"]) for row in rows]
    # down the cosine as time passes: from its top to past its middle by the last step (how near the floor that
    # step lands depends on how long a step takes on a loaded machine; the factor at each share of time is below)
    assert len(lrs) >= 2 and lrs[0] > 0.0008 and lrs[-1] < 0.0005
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    from demixer.training.trainer import _lr_lambda

    factor = {share: _lr_lambda(cfg, 10**9, lambda share=share: share)(10**6) for share in (0.0, 0.5, 1.0, 2.0)}
    assert factor == pytest.approx({0.0: 1.0, 0.5: 0.55, 1.0: 0.1, 2.0: 0.1})  # floor: min_lr_ratio 0.1
    again = train(cfg, resume=True)  # its time is spent: a resume trains no further
    assert again.finished and again.step == r.step


def _ranks_report(stderr: str) -> str:
    """What the ranks printed before torchrun's report of the failure (its traceback and ChildFailedError banner)."""
    lines = stderr.splitlines()
    end = next((i for i, line in enumerate(lines) if "failed (exitcode" in line), len(lines))
    return "\n".join(lines[:end])[-6000:]


def _died_by_signal(stderr: str) -> bool:
    """torchrun reports a rank that a signal killed (a native crash) with a negative exit code, one that raised
    a Python error with a positive one."""
    return bool(re.search(r"exitcode\s*:\s*-\d+", stderr)) and not re.search(r"exitcode\s*:\s*[1-9]", stderr)


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path):
    """--devices 2 runs torchrun with 2 Gloo processes; each takes half of every epoch.

    A rank killed by a signal (a native crash: seen once in CI, SIGABRT in rank 1 with no Python error) is
    retried once, with a warning that carries what the ranks printed; a Python error in a rank, or a second
    crash, fails the test."""
    out = tmp_path / "ddp"
    cmd = ("train", "-c", TINY, f"data.train=[{shared('music/train')}]", "--out", str(out), "--devices", "2", *QUIET)
    r = run_cli(*cmd, timeout=600)
    if r.returncode != 0 and _died_by_signal(r.stderr):
        warnings.warn(
            f"a DDP rank died by a signal; retrying once. What the ranks printed:\n{_ranks_report(r.stderr)}",
            stacklevel=1,
        )
        r = run_cli(*cmd, "--overwrite", timeout=600)
    assert r.returncode == 0, (
        f"exit {r.returncode}; the ranks printed:\n{_ranks_report(r.stderr)}\n--- stdout:\n{r.stdout[-2000:]}"
    )
    assert "torch.distributed.run" in r.stderr and "--nproc-per-node=2" in r.stderr
    assert "training finished at epoch 2, step 4" in r.stdout  # 8 items / (2 processes x batch 2) = 2 steps per epoch
    assert (out / "best.safetensors").exists()


def test_speaker_separation_trains_with_pit(tmp_path):
    cfg = speaker_training_config(
        tmp_path / "spk",
        "unet",
        {
            "sources": ["speaker1", "speaker2"],
            "sample_rate": 8000,
            "audio_channels": 1,
            "n_fft": 256,
            "hop_length": 64,
            "max_bin": 128,
            "channels": 8,
            "depth": 2,
        },
    )
    cfg.optim.lr = 0.01
    r = train(cfg)
    assert r.finished and "si_sdr_speaker1" in r.valid and math.isfinite(r.valid["si_sdr"])
    assert_learned(tmp_path / "spk", "si_sdr", min_gain=0.1)  # seen: -0.07 -> 0.15 dB in 4 epochs


def small_speech_unet(sources: list[str]) -> dict:
    """A model section: a small 16 kHz mono U-Net with these sources (a few seconds an epoch on CPU)."""
    config = dict(sample_rate=16000, audio_channels=1, n_fft=512, hop_length=128, max_bin=256, channels=4, depth=2)
    return {"architecture": "unet", "config": {"sources": sources, **config}}


def test_denoiser_trains_on_noisy_clean_pairs(tmp_path):
    cfg = load_config(
        data={
            "model": small_speech_unet(["speech", "noise"]),
            "data": {
                "kind": "noisy_clean",
                "train": [str(shared("denoising_pairs"))],
                "valid": [str(shared("denoising_pairs"))],
                "segment": 1.0,
                "items_per_epoch": 16,
                "valid_items": 4,
                "batch_size": 4,
            },
            "optim": {"lr": 0.01},
            "schedule": {"epochs": 4, "warmup_steps": 0},
            "train": {"out": str(tmp_path / "dn"), "progress": False, "tensorboard": False},
        }
    )
    r = train(cfg)
    assert r.finished and "si_sdr_speech" in r.valid
    assert_learned(tmp_path / "dn", "si_sdr_speech", min_gain=0.15)  # seen: 7.26 -> 7.53 dB in 4 epochs


def test_dialogue_separation_trains_on_speech_music_and_effects(tmp_path):
    music = shared("music/train")
    cfg = load_config(
        data={
            "model": small_speech_unet(["speech", "music", "effects"]),
            "data": {
                "kind": "dialogue",
                "train": [str(shared("speech/librispeech"))],
                "valid": [str(shared("speech/cmu_arctic"))],
                "music": [str(music / "hydrogen")],
                "valid_music": [str(music / "caesium")],
                "effects": [str(shared("noise/speech_commands_background"))],
                "valid_effects": [str(shared("noise/sms_tools"))],
                "segment": 1.0,
                "items_per_epoch": 16,
                "valid_items": 8,
                "batch_size": 4,
            },
            "optim": {"lr": 0.01},
            "schedule": {"epochs": 4, "warmup_steps": 0},
            "train": {"out": str(tmp_path / "dlg"), "progress": False, "tensorboard": False},
        }
    )
    r = train(cfg)
    assert r.finished and {"sdr_speech", "sdr_music", "sdr_effects"} <= set(r.valid)
    assert_learned(tmp_path / "dlg", "sdr", min_gain=0.2)
    from demixer.training.datasets import build_datasets

    cfg.data.valid_music = []
    with pytest.raises(ConfigError, match="data.valid_music"):
        build_datasets(cfg.data, build_model(cfg.model.architecture, cfg.model.config))


def test_unet_shapes_and_gradients():
    m = build_model(
        "unet",
        {"sources": ["a", "b", "c"], "channels": 4, "depth": 3, "max_bin": 256, "n_fft": 1024, "hop_length": 256},
    )
    x = torch.randn(2, 2, 11025, requires_grad=True)
    y = m(x)
    assert y.shape == (2, 3, 2, 11025)
    y.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    m.eval()
    assert m(torch.randn(1, 2, 1)).shape == (1, 3, 2, 1), "any length, even one sample"
    m.config.wiener_iterations = 1
    with torch.no_grad():
        mix = torch.randn(1, 2, 8000)
        assert torch.allclose(m(mix).sum(1), mix, atol=1e-4), "the Wiener post-filter's estimates sum to the mixture"


def test_unet_frequency_coordinates():
    cfg = {"sources": ["a", "b"], "channels": 4, "depth": 2, "max_bin": 64, "n_fft": 256, "hop_length": 64}
    plain, coords = build_model("unet", cfg), build_model("unet", {**cfg, "freq_coords": True})
    assert coords.down[0].conv.in_channels == plain.down[0].conv.in_channels + 1
    torch.manual_seed(0)
    coords.eval()
    x = torch.randn(1, 2, 4000)
    assert coords(x).shape == (1, 2, 2, 4000)
    # the same spectral pattern an octave apart gets different masks once the network knows where it is
    with torch.no_grad():
        coords.down[0].conv.weight.zero_()
        coords.down[0].conv.weight[:, -1] = 1.0  # only the coordinate channel reaches the encoder
        m = coords.masks(coords.stft(x))
    assert not torch.allclose(m[..., 4, :], m[..., 40, :])


def test_model_init_starts_from_a_finished_run(tmp_path):
    """`model.init` fine-tunes: the new run starts from the given weights; a misfit is a config error."""
    first = _stems_config(tmp_path, "schedule.epochs=1")
    train(first)
    best = tmp_path / "run" / "best.safetensors"
    cfg = load_config(
        TINY, [f"data.train=[{shared('music/train')}]", f"train.out={tmp_path / 'ft'}", *QUIET, f"model.init={best}"]
    )
    t = Trainer(cfg)
    start = load_file(str(best))
    assert all(torch.equal(v, start[k]) for k, v in t.model.state_dict().items())
    wider = load_config(
        TINY,
        [
            f"data.train=[{shared('music/train')}]",
            f"train.out={tmp_path / 'w'}",
            *QUIET,
            f"model.init={best}",
            "model.config.channels=8",
        ],
    )
    with pytest.raises(ConfigError, match="does not fit"):
        Trainer(wider)
    # a new head on the trained body: what fits is taken, the head starts afresh
    two = load_config(
        TINY,
        [
            f"data.train=[{shared('music/train')}]",
            f"train.out={tmp_path / 'k'}",
            *QUIET,
            f"model.init={best}",
            "model.init_strict=false",
            "model.config.sources=[vocals,accompaniment]",
            "data.groups={accompaniment: [drums, bass, other]}",
        ],
    )
    t = Trainer(two)
    own = t.model.state_dict()
    taken = [k for k in own if k in start and start[k].shape == own[k].shape]
    assert taken and len(taken) < len(own)
    assert all(torch.equal(own[k], start[k]) for k in taken)
    with pytest.raises(ConfigError, match="model.init"):
        Trainer(
            load_config(
                TINY,
                [
                    f"data.train=[{shared('music/train')}]",
                    f"train.out={tmp_path / 'm'}",
                    *QUIET,
                    f"model.init={tmp_path / 'none.safetensors'}",
                ],
            )
        )


def _from_main_rank(rank: int, port: int, results) -> None:
    import torch.distributed as tdist

    from demixer.training import distributed

    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        d = distributed.Dist(rank, rank, 2)
        results[rank] = distributed.from_main(100.0 + rank * 0.25, d)  # two clocks a quarter second apart
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow
def test_timed_runs_take_rank_0s_clock():
    """Under DDP every rank reads rank 0's elapsed time (distributed.from_main), so a time limit (schedule.minutes,
    train.max_minutes) stops all ranks at the same step instead of leaving one waiting in an all-reduce."""
    import socket

    import torch.multiprocessing as mp

    from demixer.training import distributed

    assert distributed.from_main(3.5, distributed.Dist()) == 3.5  # one process: its own clock
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.start_processes(_from_main_rank, args=(port, results), nprocs=2, join=True, start_method="spawn")
    assert dict(results) == {0: 100.0, 1: 100.0}


@pytest.mark.slow
@pytest.mark.parametrize(
    "architecture, config, message",
    [
        ("unet", {"kernel": 4}, "kernel must be odd"),
        ("convtasnet", {"kernel": 15}, "kernel must be even"),
        ("bs_roformer", {"freqs_per_bands": [3, 4]}, "freqs_per_bands must sum"),
    ],
)
def test_bad_model_configs_raise_config_error_even_under_python_O(architecture, config, message):
    """Config checks are not asserts: they hold under `python -O` and raise the project's ConfigError."""
    code = (
        "from demixer.errors import ConfigError\n"
        "from demixer.models.checkpoint import build_model\n"
        f"try:\n    build_model({architecture!r}, {config!r})\n"
        "except ConfigError as exc:\n    print('ConfigError:', exc)\n"
    )
    r = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ConfigError:") and message in r.stdout, r.stdout


def test_every_config_in_the_tree_is_valid_and_every_data_kind_has_an_example():
    """configs/ holds the shipped recipes, tiny-test and one example per data kind; all of them load."""
    from demixer.models.checkpoint import build_model
    from demixer.training.config import DataSection

    paths = sorted((ROOT / "configs").rglob("*.yaml")) + sorted((ROOT / "scripts" / "device").glob("*.yaml"))
    kinds = set()
    for path in paths:
        cfg = load_config(path)
        build_model(cfg.model.architecture, cfg.model.config)  # the model section builds too
        kinds.add(cfg.data.kind)
    assert kinds == set(DataSection.model_fields["kind"].annotation.__args__)
