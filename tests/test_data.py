"""Datasets: layouts, additivity, determinism, silent stems, resampled crops, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from demixer.audio import load_audio, resample
from demixer.data import (
    Augment,
    NoiseMixDataset,
    NoisyCleanDataset,
    SpeakerMixDataset,
    StemDataset,
    find_pairs,
    find_tracks,
)
from demixer.data.clips import speaker_of
from demixer.errors import DemixerError

from .conftest import shared, write_stem_mp4

MUSIC = "music/train"
STEMS = ("vocals", "drums", "bass", "other")


def _write_tracks(root: Path, n: int = 3, seconds: float = 2.0, sr: int = 44100, missing: dict | None = None) -> Path:
    rng = np.random.default_rng(0)
    for t in range(n):
        for s in STEMS:
            if missing and s in missing.get(t, ()):
                continue
            x = (0.1 * rng.standard_normal((int(seconds * sr), 2))).astype(np.float32)
            (root / f"track{t}").mkdir(parents=True, exist_ok=True)
            sf.write(root / f"track{t}" / f"{s}.flac", x, sr)
    return root


def test_real_stems_are_additive_and_deterministic():
    root = shared(MUSIC)
    ds = StemDataset(root, STEMS, segment=1.0, items=6, seed=3)
    assert len(ds.tracks) == 5 and {t.name for t in ds.tracks} >= {"caesium", "hydrogen"}
    for i in range(len(ds)):
        mix, src = ds[i]
        assert src.shape == (4, 2, 44100) and mix.shape == (2, 44100)
        assert torch.equal(mix, src.sum(0)), "mixture must be exactly the sum of the sources"
        assert mix.abs().max() <= 0.99 + 1e-6
    a = ds[2][1]
    assert torch.equal(a, StemDataset(root, STEMS, segment=1.0, items=6, seed=3)[2][1]), (
        "same seed, epoch, index: same example"
    )
    ds.set_epoch(1)
    assert not torch.equal(a, ds[2][1]), "another epoch draws other examples"


def test_validation_windows_fixed_and_unaugmented(tmp_path):
    root = _write_tracks(tmp_path, n=2)
    v = StemDataset(root, STEMS, segment=0.5, validation=True, items_per_track=3, seed=1)
    assert len(v) == 6
    first = v[4][1]
    v.set_epoch(7)
    assert torch.equal(first, v[4][1])
    raw = sf.read(tmp_path / "track1" / "drums.flac", dtype="float32")[0].T
    start = v.windows[4][1]
    np.testing.assert_allclose(v[4][1][1].numpy(), raw[:, start : start + v.frames], atol=1e-6)


def test_missing_stem_reads_as_silence_and_groups_sum(tmp_path):
    root = _write_tracks(tmp_path, n=2, missing={0: ("bass",)})
    tracks = find_tracks(root)
    assert "bass" not in tracks[0].stems and "bass" in tracks[1].stems
    v = StemDataset(tracks, ["vocals", "bass"], segment=0.5, validation=True, items_per_track=1)
    assert float(v[0][1][1].abs().max()) == 0.0
    g = StemDataset(
        tracks,
        ["vocals", "accompaniment"],
        segment=0.5,
        validation=True,
        items_per_track=1,
        groups={"accompaniment": ["drums", "bass", "other"]},
    )
    t = tracks[1]
    start = g.windows[1][1]
    parts = sum(t.read(s, start, g.frames, 44100, 2) for s in ("drums", "bass", "other"))
    np.testing.assert_allclose(g[1][1][1].numpy(), parts, atol=1e-6)


def _sine_tracks(root: Path, freq: float = 440.0, seconds: float = 3.0, sr: int = 44100) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for s, f in (("vocals", freq), ("drums", 3 * freq)):
            sf.write(root / name / f"{s}.flac", np.stack([0.3 * np.sin(2 * np.pi * f * t)] * 2, 1), sr)
    return root


def _peak_hz(x: np.ndarray, sr: int = 44100) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def test_speed_perturbation_moves_pitch_and_keeps_examples_additive(tmp_path):
    root = _sine_tracks(tmp_path)
    ds = StemDataset(
        root,
        ["vocals", "drums"],
        segment=1.0,
        items=8,
        seed=0,
        speed=(0.8, 1.25),
        augment=Augment(gain_db=(0, 0), channel_swap=0, polarity=0, remix=0),
    )
    peaks = []
    for i in range(len(ds)):
        mix, src = ds[i]
        assert src.shape == (2, 2, 44100) and torch.equal(mix, src.sum(0))
        v, d = _peak_hz(src[0, 0].numpy()), _peak_hz(src[1, 0].numpy())
        assert 0.8 * 440 - 2 <= v <= 1.25 * 440 + 2
        assert abs(d / v - 3.0) < 0.02, "without remix one factor plays the whole example"
        peaks.append(v)
    assert max(peaks) - min(peaks) > 20, "factors are drawn per example"
    v = StemDataset(root, ["vocals", "drums"], segment=1.0, seed=0, speed=(0.8, 1.25), validation=True)
    assert all(abs(_peak_hz(v[i][1][0, 0].numpy()) - 440) < 2 for i in range(len(v))), "validation is never perturbed"
    with pytest.raises(ValueError, match="speed"):
        StemDataset(root, ["vocals"], speed=(1.2, 0.9))


def test_extra_solo_clips_stand_in_for_a_source(tmp_path):
    root = _sine_tracks(tmp_path / "songs")
    solo = tmp_path / "singing"
    solo.mkdir()
    sr = 44100
    t = np.arange(2 * sr) / sr
    sf.write(solo / "voice.flac", 0.2 * np.sin(2 * np.pi * 1000 * t), sr)  # mono, shorter than no crop
    ds = StemDataset(
        root,
        ["vocals", "drums"],
        segment=1.0,
        items=6,
        seed=0,
        extra={"vocals": [solo]},
        extra_p=1.0,
        augment=Augment(gain_db=(0, 0), channel_swap=0, polarity=0, remix=0),
    )
    for i in range(len(ds)):
        mix, src = ds[i]
        assert torch.equal(mix, src.sum(0))
        assert abs(_peak_hz(src[0, 0].numpy()) - 1000) < 2, "the vocals are the solo clip"
        assert abs(_peak_hz(src[1, 0].numpy()) - 1320) < 2, "the other stems stay"
        level = 10 * np.log10(src[0].pow(2).mean().item() / src[1].pow(2).mean().item())
        assert -8.5 <= level <= 2.5
    never = StemDataset(root, ["vocals", "drums"], segment=1.0, items=4, seed=0, extra={"vocals": [solo]}, extra_p=0.0)
    assert all(abs(_peak_hz(never[i][1][0, 0].numpy()) - 440) < 2 for i in range(len(never)))
    with pytest.raises(ValueError, match="does not have"):
        StemDataset(root, ["vocals", "drums"], extra={"bass": [solo]}, extra_p=0.5)
    with pytest.raises(DemixerError, match="does not exist"):
        StemDataset(root, ["vocals", "drums"], extra={"vocals": [tmp_path / "nope"]}, extra_p=0.5)


def test_no_tracks_is_a_clear_error(tmp_path):
    with pytest.raises(DemixerError, match="no tracks found"):
        find_tracks(tmp_path)
    with pytest.raises(DemixerError, match="does not exist"):
        find_tracks(tmp_path / "nope")


def test_resampled_crop_matches_whole_file_resampling(tmp_path):
    sr_file, sr = 48000, 44100
    rng = np.random.default_rng(1)
    t = np.arange(3 * sr_file) / sr_file
    x = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1000 * t)]).astype(np.float32) * 0.3
    x += 0.01 * rng.standard_normal(x.shape).astype(np.float32)
    (tmp_path / "song").mkdir()
    sf.write(tmp_path / "song" / "vocals.wav", x.T, sr_file, subtype="FLOAT")
    track = find_tracks(tmp_path)[0]
    whole = resample(x, sr_file, sr)
    for start in (0, 12345, 2 * sr):
        crop = track.read("vocals", start, 22050, sr, 2)
        ref = np.zeros_like(crop)
        piece = whole[:, start : start + 22050]
        ref[:, : piece.shape[1]] = piece
        err = np.abs(crop - ref)[:, 200:-200].max()  # edges aside, the crop equals the whole-file result
        assert err < 2e-3, (start, err)


def test_musdb_stem_mp4(tmp_path):
    """A MUSDB18 .stem.mp4 (5 AAC streams: mixture, drums, bass, other, vocals) reads stem by stem."""
    sr, n = 44100, 44100 * 2
    t = np.arange(n) / sr
    freqs = {"drums": 200, "bass": 80, "other": 1000, "vocals": 440}
    stems = {k: np.stack([0.3 * np.sin(2 * np.pi * f * t)] * 2) for k, f in freqs.items()}
    (tmp_path / "db").mkdir()
    write_stem_mp4(tmp_path / "db" / "Artist - Song.stem.mp4", stems, sr)
    track = find_tracks(tmp_path / "db")[0]
    assert track.name == "Artist - Song" and set(track.stems) == set(freqs)
    bass = track.read("bass", 0, n, sr, 2)[0]
    spectrum = np.abs(np.fft.rfft(bass))
    assert abs(np.argmax(spectrum) * sr / len(bass) - 80) < 2, "stream 2 of a stem file is the bass"
    ds = StemDataset([track], ["vocals", "bass"], segment=0.5, items=2)
    mix, src = ds[0]
    assert torch.equal(mix, src.sum(0))


def test_speaker_labels():
    assert speaker_of(Path("/x/3436-172162-0000.flac")) == "3436"
    assert speaker_of(Path("/x/cmu_arctic_us_aew_a0001.flac")) == "cmu_arctic_us_aew"
    assert speaker_of(Path("/root/19/198/19-198-0001.flac"), Path("/root")) == "19"
    assert speaker_of(Path("/x/spk7_utt3.wav"), pattern=r"spk(\d+)") == "7"


def test_speaker_mixtures():
    roots = sorted(shared("speech").iterdir())
    ds = SpeakerMixDataset(
        roots, speakers=2, sample_rate=8000, segment=3.0, items=8, noise=[shared("noise")], snr_db=(5, 5)
    )
    assert ds.sources == ("speaker1", "speaker2", "noise")
    assert len(ds.speakers) >= 10
    for i in range(len(ds)):
        mix, src = ds[i]
        assert src.shape == (3, 1, 24000) and torch.equal(mix, src.sum(0))
        speech, noise = src[:2].sum(0), src[2]
        snr = 10 * torch.log10(speech.pow(2).sum() / noise.pow(2).sum())
        assert abs(float(snr) - 5.0) < 0.01
        active = (src[:2, 0].abs() > 1e-4).float()
        assert active.sum(-1).min() > 0, "both speakers talk"
    three = SpeakerMixDataset(roots, speakers=3, sample_rate=8000, segment=2.0, items=2)
    assert three[0][1].shape[0] == 3
    with pytest.raises(DemixerError, match="different speakers"):
        SpeakerMixDataset([shared("speech/librispeech")], speakers=3)


def test_noisy_clean_pairs_reproduce_the_noisy_file():
    root = shared("denoising_pairs")
    pairs = find_pairs(root)
    assert len(pairs) == 4
    ds = NoisyCleanDataset(root, sample_rate=16000, segment=2.0, validation=True)
    mix, src = ds[0]
    noisy, _ = load_audio(pairs[0][0])
    n = min(noisy.shape[1], 32000)
    start = (noisy.shape[1] - 32000) // 2 if noisy.shape[1] > 32000 else 0
    np.testing.assert_allclose(mix[0, :n].numpy(), noisy[0, start : start + n], atol=1e-6)
    assert ds.sources == ("speech", "noise")


def test_noise_mixing_snr_range():
    ds = NoiseMixDataset(
        sorted(shared("speech").iterdir()), [shared("noise")], sample_rate=16000, segment=2.0, items=10, snr_db=(0, 10)
    )
    for i in range(len(ds)):
        mix, src = ds[i]
        assert torch.equal(mix, src.sum(0))
        snr = float(10 * torch.log10(src[0].pow(2).sum() / src[1].pow(2).sum()))
        assert -0.01 <= snr <= 10.01


def test_augment_keeps_examples_additive():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 1000)).astype(np.float32)
    aug = Augment(gain_db=(-6, 6), channel_swap=1.0, polarity=1.0)
    y = aug(x, rng)
    assert np.allclose(np.abs(y[:, ::-1]).max(-1), np.abs(y[:, ::-1]).max(-1))
    ratio = np.abs(y[:, 0]).max(-1) / np.abs(x[:, 1]).max(-1)
    assert np.all((ratio > 10 ** (-6 / 20) - 1e-6) & (ratio < 10 ** (6 / 20) + 1e-6)), "swapped channels, gain in range"
    with pytest.raises(ValueError):
        Augment(polarity=2.0)


@pytest.mark.slow
def test_data_mix_writes_fixed_sets_that_evaluate_reads(tmp_path):
    """`demixer data mix`: LibriMix / noisy-clean layouts, additive, the same files for the same seed."""
    from demixer.audio import load_audio
    from demixer.evaluation.datasets import load_dataset

    from .conftest import run_cli

    speech = [str(p) for p in sorted(shared("speech").iterdir())]
    args = sum((["--speech", s] for s in speech), [])
    for out in ("a", "b"):
        r = run_cli(
            "data", "mix", "speakers", "--out", tmp_path / out, *args, "--items", "3", "--seconds", "2", "--seed", "3"
        )
        assert r.returncode == 0, r.stderr
    mix, _ = load_audio(tmp_path / "a" / "mix_clean" / "0001.wav")
    s1, _ = load_audio(tmp_path / "a" / "s1" / "0001.wav")
    s2, _ = load_audio(tmp_path / "a" / "s2" / "0001.wav")
    assert mix.shape == (1, 16000) and np.abs(mix - s1 - s2).max() < 1e-4
    assert np.array_equal(mix, load_audio(tmp_path / "b" / "mix_clean" / "0001.wav")[0])
    items = load_dataset(tmp_path / "a")
    assert len(items) == 3 and items[0].kind == "speakers"
    r = run_cli("data", "mix", "denoise", "--out", tmp_path / "d", *args, "--noise", shared("noise"), "--items", "2")
    assert r.returncode == 0, r.stderr
    assert [i.kind for i in load_dataset(tmp_path / "d")] == ["denoise", "denoise"]
    r = run_cli("data", "mix", "denoise", "--out", tmp_path / "e", *args)
    assert r.returncode != 0 and "--noise" in r.stderr


def test_random_eq_is_a_smooth_bounded_equaliser():
    from demixer.data.augment import random_eq

    x = np.random.default_rng(0).standard_normal(64000).astype(np.float32)
    assert random_eq(x, 8000, 0.0, np.random.default_rng(1)) is x  # off: untouched, no draw
    y = random_eq(x, 8000, 6.0, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_array_equal(y, random_eq(x, 8000, 6.0, np.random.default_rng(1)))  # seeded
    ratio_db = 10 * np.log10(np.abs(np.fft.rfft(y)) ** 2 / np.abs(np.fft.rfft(x)) ** 2)[200:]  # above 25 Hz
    assert np.all(np.abs(ratio_db) <= 6.0 + 1e-3) and np.ptp(ratio_db) > 2.0  # bounded, and not flat
    assert np.all(np.abs(np.diff(ratio_db)) < 0.01)  # smooth: no comb or notch


def test_eq_in_training_sets_only():
    one = [shared("speech/librispeech")]
    kw = dict(speakers=2, sample_rate=8000, segment=4.0, items=2, seed=3)
    plain, eq = SpeakerMixDataset(one, **kw), SpeakerMixDataset(one, eq_db=6.0, **kw)
    (_, s0), (m1, s1) = plain[0], eq[0]
    assert not torch.allclose(s0, s1)
    torch.testing.assert_close(m1, s1.sum(0))  # still additive
    held = [SpeakerMixDataset(one, validation=True, **kw, **x)[0][1] for x in ({}, {"eq_db": 6.0})]
    torch.testing.assert_close(held[0], held[1])  # validation examples are never equalised
    with pytest.raises(ValueError, match="eq_db"):
        SpeakerMixDataset(one, eq_db=-1.0, **kw)
    speech, noise = [shared("speech/librispeech")], [shared("noise/speech_commands_background")]
    kw = dict(sample_rate=16000, segment=2.0, items=2, seed=1)
    (_, s0), (m1, s1) = NoiseMixDataset(speech, noise, **kw)[0], NoiseMixDataset(speech, noise, eq_db=6.0, **kw)[0]
    assert not torch.allclose(s0, s1)
    torch.testing.assert_close(m1, s1.sum(0))
    held = [NoiseMixDataset(speech, noise, validation=True, **kw, **x)[0][1] for x in ({}, {"eq_db": 6.0})]
    torch.testing.assert_close(held[0], held[1])


def test_speaker_speed_perturbation_and_folder_balance():
    """speed plays each utterance faster (shorter) in training sets only; balance='folder' draws every folder alike."""
    one = [shared("speech/librispeech")]

    def span(ds):
        src = ds[0][1][0, 0].numpy()
        nz = np.flatnonzero(np.abs(src) > 0)
        return nz[-1] - nz[0] + 1

    plain = span(SpeakerMixDataset(one, speakers=1, sample_rate=8000, segment=30.0, items=1, seed=3))
    fast = span(SpeakerMixDataset(one, speakers=1, sample_rate=8000, segment=30.0, items=1, seed=3, speed=(2.0, 2.0)))
    assert abs(fast / plain - 0.5) < 0.01
    held = SpeakerMixDataset(
        one, speakers=1, sample_rate=8000, segment=30.0, items=1, seed=3, speed=(2.0, 2.0), validation=True
    )
    assert span(held) == plain, "validation examples are never perturbed"
    with pytest.raises(ValueError, match="speed"):
        SpeakerMixDataset(one, speakers=1, speed=(1.2, 0.8))

    roots = [
        shared("speech/cmu_arctic"),
        shared("speech/librispeech"),
        shared("speech/librispeech_rtvc"),
    ]  # 2, 2, 4 talkers
    rng = np.random.default_rng(0)
    for balance, expect in (("folder", [1 / 3] * 3), ("speaker", [0.25, 0.25, 0.5])):
        ds = SpeakerMixDataset(roots, speakers=1, sample_rate=8000, items=1, balance=balance)
        picks = [ds._compose(rng)[1][0].split("/")[0] for _ in range(3000)]
        share = [picks.count(r.name) / len(picks) for r in roots]
        assert np.allclose(share, expect, atol=0.04), (balance, share)


def test_train_weights_share_examples_between_folders(tmp_path):
    """``data.train_weights``: one folder of many tracks does not drown a folder of few."""
    from demixer.models.checkpoint import build_model
    from demixer.training.config import ConfigError, load_config
    from demixer.training.datasets import build_datasets

    sr = 8000
    for folder, n, level in (("real", 1, 0.3), ("synth", 4, 0.01)):
        for t in range(n):
            (tmp_path / folder / f"{folder}{t}").mkdir(parents=True)
            for s in ("vocals", "drums"):
                sf.write(tmp_path / folder / f"{folder}{t}" / f"{s}.flac", np.full((sr, 2), level, np.float32), sr)
    model = build_model("tiny_mask", {"sources": ["vocals", "drums"], "sample_rate": sr})

    def share_of_real(weights):
        data = {
            "kind": "stems",
            "train": [str(tmp_path / "real"), str(tmp_path / "synth")],
            "holdout": ["synth0"],
            "segment": 0.5,
            "items_per_epoch": 400,
            "train_weights": weights,
            "augment": {"gain_db": [0, 0], "remix": 0, "channel_swap": 0, "polarity": 0},
        }
        cfg = load_config(data={"model": {"architecture": "tiny_mask"}, "data": data})
        train, valid = build_datasets(cfg.data, model)
        assert [t.name for t in valid.tracks] == ["synth0"]
        return np.mean([float(train[i][1].abs().max()) > 0.1 for i in range(len(train))])

    assert 0.15 < share_of_real(None) < 0.35, "unweighted: 1 track in 4"
    assert 0.65 < share_of_real([0.75, 0.25]) < 0.85
    with pytest.raises(ConfigError, match="train_weights"):
        load_config(
            data={
                "model": {"architecture": "tiny_mask"},
                "data": {"kind": "stems", "train": ["a", "b"], "train_weights": [1.0]},
            }
        )


@pytest.mark.slow
def test_data_join_trims_levels_and_joins_clips_per_speaker(tmp_path):
    """`demixer data join`: each speaker folder's clips lose their silent edges, are levelled to -25 dB RMS and
    joined with pauses in the gap range; silent and unreadable clips are left out and counted; the speakers are what
    SpeakerMixDataset reads; the same seed gives the same files."""
    import json

    from .conftest import run_cli

    root = tmp_path / "clips"
    rng = np.random.default_rng(0)
    sizes = {}
    for speaker, sr, freq in (("anna", 44100, 220.0), ("bert", 22050, 330.0)):
        for k in range(5):
            folder = root / speaker / ("letters" if k % 2 else "")  # files may sit in subfolders
            folder.mkdir(parents=True, exist_ok=True)
            active = 0.3 + 0.1 * k
            t = np.arange(int(active * sr)) / sr
            voice = (0.05 * (k + 1)) * np.sin(2 * np.pi * freq * t) * np.hanning(len(t)) ** 0.1
            clip = np.concatenate([np.zeros(int(0.4 * sr)), voice, np.zeros(int(0.5 * sr))])
            clip = clip + 1e-5 * rng.standard_normal(len(clip))
            sf.write(folder / f"{speaker}{k}.wav", np.stack([clip, clip], 1) if speaker == "anna" else clip, sr)
            sizes.setdefault(speaker, []).append(active)
    sf.write(root / "anna" / "silent.wav", np.zeros(8000), 16000)
    (root / "bert" / "broken.wav").write_bytes(b"RIFF not audio")
    (root / "empty").mkdir()
    for out in ("a", "b"):
        r = run_cli(
            "data", "join", root, "--out", tmp_path / out, "--seconds", "1.0", "--gap", "0.1", "0.2", "--no-progress"
        )
        assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "a" / "join.json").read_text())["speakers"]
    assert summary["anna"]["clips"] == 5 and summary["bert"] == {**summary["bert"], "clips": 5, "unreadable": 1}
    assert "empty" not in summary
    for speaker in ("anna", "bert"):
        files = sorted((tmp_path / "a" / speaker).glob("*.flac"))
        assert len(files) == summary[speaker]["utterances"] >= 2
        total = 0.0
        for f in files:
            x, sr = sf.read(f)
            assert sr == 16000 and x.ndim == 1
            assert np.array_equal(x, sf.read(tmp_path / "b" / speaker / f.name)[0])
            frames = np.sqrt(np.mean(x[: len(x) // 320 * 320].reshape(-1, 320) ** 2, axis=1))
            assert frames[0] > 1e-3 and frames[-1] > 1e-3  # no silent edge
            gaps = np.diff(np.flatnonzero(np.concatenate([[1], frames > 1e-3, [1]]) == 1)) - 1
            assert all(4 <= g <= 11 for g in gaps if g)  # pauses of 0.1-0.2 s, in 20 ms frames (+-1 at the edges)
            total += len(x) / sr
        pauses = total - sum(sizes[speaker])
        assert 0.1 * (5 - len(files)) - 0.05 < pauses < 0.2 * (5 - len(files)) + 0.05  # the clips, trimmed, + pauses
    levels = [
        20 * np.log10(np.sqrt(np.mean(x[np.abs(x) > 1e-3] ** 2)))
        for x in (sf.read(f)[0] for f in sorted((tmp_path / "a").rglob("*.flac")))
    ]
    assert max(levels) - min(levels) < 1.5  # clips 0.05..0.25 in amplitude come out levelled
    data = SpeakerMixDataset(tmp_path / "a", speakers=2, sample_rate=8000, segment=1.0, items=2)
    assert data.speakers == ["a/anna", "a/bert"]
    r = run_cli("data", "join", tmp_path / "missing", "--out", tmp_path / "c", "--no-progress")
    assert r.returncode != 0 and "not a folder" in r.stderr


def test_dialogue_mixtures_are_additive_at_podcast_balances_with_absent_sources(tmp_path):
    from demixer.data.augment import rms_db
    from demixer.data.dialogue import DialogueBalance, DialogueMixDataset, MusicBank

    music_root = shared("music/train")
    bank = MusicBank([music_root / "caesium"], 16000)  # a song kept as stems is read as their sum
    assert len(bank) == 1 and len(bank.songs[0]) == 4
    balance = DialogueBalance(music_db=(-20.0, -10.0), effects_db=(-15.0, -5.0), speech_p=1.0, music_p=0.5)
    ds = DialogueMixDataset(
        shared("speech/librispeech"),
        [music_root / "caesium"],
        shared("noise/speech_commands_background"),
        sample_rate=16000,
        segment=2.0,
        items=24,
        balance=balance,
        eq_db=6.0,
    )
    assert ds.sources == ("speech", "music", "effects")
    silent_music = 0
    for i in range(len(ds)):
        mix, src = ds[i]
        assert mix.shape == (1, 32000) and src.shape == (3, 1, 32000)
        assert torch.equal(mix, src.sum(0))
        s, m, e = (src[k].numpy() for k in range(3))
        if not np.any(m):
            silent_music += 1
        elif np.any(e):  # the peak limit scales all three alike, so the balance holds
            assert -20.5 <= rms_db(m) - rms_db(s) <= -9.5
            assert -15.5 <= rms_db(e) - rms_db(s) <= -4.5
    assert 4 <= silent_music <= 20  # music is absent about half of the time
