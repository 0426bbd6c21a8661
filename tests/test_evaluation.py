"""Evaluation: parity with museval / fast_bss_eval / torchmetrics, oracles, `demixer evaluate`,
`demixer inspect`, and the reference-free quality signals ranked on real stems."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from demixer.dsp.oracle import oracle_separate
from demixer.evaluation import bss_eval_v4, bss_sdr, pesq, pit, sdr, sdr_i, si_sdr, si_sdr_i, stoi
from demixer.evaluation.datasets import load_dataset
from demixer.evaluation.quality import quality_signals
from demixer.transforms import STFT

from .conftest import ROOT, run_cli, shared, write_stem_mp4

museval = pytest.importorskip("museval")
VALID = "music/valid"


def _museval(ref: np.ndarray, est: np.ndarray, win: int = 44100, hop: int = 44100) -> tuple[np.ndarray, ...]:
    """museval on our [S, C, T] layout."""
    return museval.evaluate(ref.transpose(0, 2, 1), est.transpose(0, 2, 1), win=win, hop=hop)[:4]


def _assert_parity(ref: np.ndarray, est: np.ndarray, win: int = 44100, hop: int = 44100, tol: float = 0.01) -> None:
    ours = bss_eval_v4(reference=ref, estimate=est, window=win, hop=hop)
    theirs = _museval(ref, est, win, hop)
    for name, t in zip(("sdr", "isr", "sir", "sar"), theirs):
        o = getattr(ours, name)
        assert o.shape == t.shape
        assert np.array_equal(np.isnan(o), np.isnan(t)), f"{name}: NaN frames differ"
        assert np.nanmax(np.abs(o - t)) < tol, (name, np.nanmax(np.abs(o - t)))


@pytest.fixture(scope="module")
def valid_track():
    mix, refs, sr = load_dataset(shared(VALID))[0].load()
    names = ["vocals", "drums", "bass", "other"]
    return mix.astype(np.float64), np.stack([refs[n] for n in names]).astype(np.float64), names, sr


@pytest.mark.parametrize("case", [pytest.param("stereo4", marks=pytest.mark.slow), "mono2", "short", "overlap"])
def test_bsseval_v4_matches_museval_on_random_signals(case):
    rng = np.random.default_rng(len(case))
    shape, win, hop = {
        "stereo4": ((4, 2, 3 * 44100 + 1234), 44100, 44100),
        "mono2": ((2, 1, 2 * 16000), 16000, 16000),
        "short": ((3, 2, 20000), 44100, 44100),
        "overlap": ((2, 2, 3 * 8000), 8000, 4000),
    }[case]
    ref = rng.standard_normal(shape)
    est = ref + 0.3 * rng.standard_normal(shape) + 0.2 * np.roll(ref, 1, axis=0)
    _assert_parity(ref, est, win, hop, tol=1e-6)


@pytest.mark.parametrize("extra", [-513, -1, 0, 1, 2, 511, 512, 513])
def test_bsseval_v4_matches_museval_on_lengths_around_whole_windows(extra):
    """A track of whole windows plus a few samples (617401 = 14 s + 1 at 44.1 kHz crashed ``demixer evaluate``)."""
    rng = np.random.default_rng(extra + 1000)
    shape = (2, 2, 3 * 8000 + extra)
    ref = rng.standard_normal(shape)
    est = ref + 0.3 * rng.standard_normal(shape)
    _assert_parity(ref, est, 8000, 8000, tol=1e-6)


def test_bsseval_v4_scores_a_track_one_sample_past_whole_seconds_at_44k():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((2, 1, 2 * 44100 + 1))
    _assert_parity(ref, ref + 0.3 * rng.standard_normal(ref.shape), tol=1e-6)


@pytest.mark.slow
def test_bsseval_v4_matches_museval_on_real_stems(valid_track):
    mix, ref, _, sr = valid_track
    rng = np.random.default_rng(0)
    for est in (
        oracle_separate("irm", ref, mix),
        oracle_separate("ibm", ref, mix),
        ref + 0.2 * ref[[1, 2, 3, 0]] + 0.01 * rng.standard_normal(ref.shape),
    ):
        _assert_parity(ref, est)


def test_bsseval_v4_silent_windows_and_silent_sources():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((3, 2, 4 * 8000))
    ref[1, :, 8000:16000] = 0  # a silent second: NaN for every source there, as museval
    est = ref + 0.5 * rng.standard_normal(ref.shape)
    _assert_parity(ref, est, 8000, 8000, tol=1e-6)
    # a reference silent over the whole track: museval refuses; we score the others as museval does without it
    with_silent = np.concatenate([ref, np.zeros((1, 2, ref.shape[-1]))])
    est2 = np.concatenate([est, rng.standard_normal((1, 2, ref.shape[-1]))])
    ours = bss_eval_v4(reference=with_silent, estimate=est2, window=8000, hop=8000)
    assert np.isnan(ours.sdr[3]).all()
    theirs = _museval(ref, est, 8000, 8000)
    assert np.nanmax(np.abs(ours.sdr[:3] - theirs[0])) < 1e-6 and np.nanmax(np.abs(ours.sir[:3] - theirs[2])) < 1e-6
    with pytest.raises(ValueError):
        museval.evaluate(with_silent.transpose(0, 2, 1), est2.transpose(0, 2, 1))


def test_other_metrics_match_reference_packages():
    fast_bss_eval = pytest.importorskip("fast_bss_eval")
    tm = pytest.importorskip("torchmetrics.functional.audio")
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((3, 16000))
    est = ref[[1, 2, 0]] + 0.4 * rng.standard_normal((3, 16000))
    np.testing.assert_allclose(
        bss_sdr(reference=ref[[1, 2, 0]], estimate=est), fast_bss_eval.sdr(ref[[1, 2, 0]], est), atol=1e-6
    )
    t_ref, t_est = torch.from_numpy(ref), torch.from_numpy(est)
    assert (
        abs(
            si_sdr(reference=ref[1], estimate=est[0])
            - float(tm.scale_invariant_signal_distortion_ratio(t_est[0], t_ref[1], zero_mean=True))
        )
        < 1e-6
    )
    scores, perm = pit(reference=ref, estimate=est)
    tm_best, tm_perm = tm.permutation_invariant_training(
        t_est[None], t_ref[None], tm.scale_invariant_signal_distortion_ratio, mode="speaker-wise", eval_func="max"
    )
    assert perm.tolist() == [2, 0, 1]  # reference j is matched to estimate perm[j]
    assert abs(scores.mean() - float(tm_best)) < 1e-3  # torchmetrics' SI-SDR does not remove the mean by default
    mix = ref.sum(0)
    assert (
        abs(
            si_sdr_i(reference=ref[0], estimate=est[2], mixture=mix)
            - (si_sdr(reference=ref[0], estimate=est[2]) - si_sdr(reference=ref[0], estimate=mix))
        )
        < 1e-9
    )
    assert sdr_i(reference=ref[0], estimate=ref[0] * 0.9, mixture=mix) > 15


def test_pesq_and_stoi_rank_noise_levels():
    clean, sr = load_dataset(shared("denoising_pairs"))[0].load()[1]["speech"], 16000
    rng = np.random.default_rng(0)
    light = clean + 0.003 * rng.standard_normal(clean.shape)
    heavy = clean + 0.03 * rng.standard_normal(clean.shape)
    p = [pesq(reference=clean[0], estimate=x[0], sample_rate=sr) for x in (clean, light, heavy)]
    s = [stoi(reference=clean[0], estimate=x[0], sample_rate=sr) for x in (clean, light, heavy)]
    assert p[0] > 4.4 and p[0] > p[1] > p[2]
    assert s[0] > 0.99 and s[0] > s[1] > s[2]
    up = np.stack([np.interp(np.arange(0, clean.shape[1], 16000 / 44100), np.arange(clean.shape[1]), clean[0])])
    assert pesq(reference=up[0], estimate=up[0], sample_rate=44100, mode="nb") > 4.0, (
        "resampled to 8 kHz for narrow band"
    )


def test_oracles_far_above_the_mixture(valid_track):
    mix, ref, names, _ = valid_track
    base = bss_eval_v4(reference=ref, estimate=np.repeat(mix[None], 4, 0)).median()["SDR"]
    irm = bss_eval_v4(reference=ref, estimate=oracle_separate("irm", ref, mix)).median()["SDR"]
    mwf = bss_eval_v4(reference=ref, estimate=oracle_separate("mwf", ref, mix)).median()["SDR"]
    assert np.all(irm > base + 8), (names, irm, base)
    assert np.mean(mwf) > np.mean(irm), "the oracle multichannel Wiener filter beats the oracle ratio mask"
    for kind in ("irm", "ibm", "mwf"):
        assert np.allclose(oracle_separate(kind, ref, mix).sum(0), mix, atol=1e-6), (
            f"{kind} estimates sum to the mixture"
        )


@pytest.mark.slow
def test_quality_signals_rank_good_and_bad_separations(valid_track):
    mix, ref, names, sr = valid_track
    idx = {n: i for i, n in enumerate(names)}
    good = oracle_separate("irm", ref, mix)
    swapped = good.copy()
    swapped[idx["vocals"]], swapped[idx["drums"]] = good[idx["drums"]], good[idx["vocals"]]
    under = 0.5 * good + 0.5 * mix[None] / 4
    stft = STFT(2048, 512)
    spec = stft(torch.from_numpy(good))
    keep = torch.from_numpy((np.random.default_rng(0).random(tuple(spec.shape)) > 0.3).astype(np.float64))
    flicker = stft.inverse(spec * keep, mix.shape[-1]).numpy()
    q = {
        k: quality_signals(mix, dict(zip(names, v)), sr)
        for k, v in {"good": good, "swapped": swapped, "under": under, "flicker": flicker, "scaled": 0.7 * good}.items()
    }
    g = q["good"]
    for stem in ("vocals", "drums"):
        assert q["swapped"]["stems"][stem]["profile"] < 0.5 * g["stems"][stem]["profile"], stem
    for stem in names:
        assert q["under"]["stems"][stem]["leakage"] > g["stems"][stem]["leakage"] + 0.1, stem
    assert q["under"]["mask_confidence"] < g["mask_confidence"] - 0.1
    for stem in ("vocals", "bass", "other"):  # drums flicker by nature: compare like with like
        assert q["flicker"]["stems"][stem]["artifacts"] > g["stems"][stem]["artifacts"] + 0.2, stem
    assert g["consistency_db"] > 100 and q["scaled"]["consistency_db"] < 15 and q["flicker"]["consistency_db"] < 20
    assert all(s["clipped"] == 0 for s in g["stems"].values())
    loud = quality_signals(mix, {"a": np.clip(mix * 8, -1, 1), "b": mix - np.clip(mix * 8, -1, 1)}, sr)
    assert loud["stems"]["a"]["clipped"] > 0


@pytest.mark.slow
def test_evaluate_cli_end_to_end(tmp_path):
    """`demixer evaluate` on music/valid: a trained checkpoint, a DSP model, the baseline and the oracles."""
    run = tmp_path / "run"
    r = run_cli(
        "train",
        "-c",
        ROOT / "configs" / "tiny-test.yaml",
        f"data.train=[{shared('music/train')}]",
        "--out",
        run,
        "schedule.epochs=1",
        "data.items_per_epoch=4",
        "train.progress=false",
        "train.tensorboard=false",
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "eval"
    args = [
        "evaluate",
        "-n",
        run / "best.safetensors",
        "-n",
        "hpss",
        shared(VALID),
        "-o",
        out,
        "--oracle",
        "--no-progress",
    ]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    for model in ("run-best", "hpss", "mixture", "oracle-irm", "oracle-ibm", "oracle-mwf"):
        assert re.search(rf"^{re.escape(model)}\s+\w+\s+-?\d", r.stdout, re.M), f"{model} row missing:\n{r.stdout}"
    track = "musdb18_easton_ellises_falcon69_excerpt"
    body = json.loads((out / "run-best" / f"{track}.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(museval.__file__).parent / "musdb.schema.json").read_text())
    jsonschema.validate(body, schema)
    from museval.aggregate import json2df

    df = json2df(body, track)
    assert set(df.target) == {"vocals", "drums", "bass", "other"} and set(df.metric) == {"SDR", "SIR", "SAR", "ISR"}
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0] == "model,track,target,metric,value" and any(r.startswith("oracle-irm,") for r in rows)
    page = (out / "report.html").read_text()
    for src in re.findall(r"src='([^']+)'", page):
        assert (out / src).is_file(), src
    assert page.count("<audio") >= 10 and page.count("<img") >= 8
    assert "predicted SDR vocals" in page and re.search(r"quality estimator \(no reference\): vocals: predic", page)
    irm = json.loads((out / "oracle-irm" / f"{track}.json").read_text())["demixer"]["metrics"]
    base = json.loads((out / "mixture" / f"{track}.json").read_text())["demixer"]["metrics"]
    assert all(irm[s]["SDR"] > base[s]["SDR"] + 8 for s in irm)
    before = (out / "hpss" / f"{track}.json").stat().st_mtime_ns
    again = run_cli(*args)
    assert again.returncode == 0 and (out / "hpss" / f"{track}.json").stat().st_mtime_ns == before, (
        "finished tracks are skipped"
    )
    assert again.stdout.splitlines()[3:] == r.stdout.splitlines()[3:], "a resumed run reports the same numbers"


@pytest.mark.slow
def test_evaluate_speakers_and_denoise_layouts(tmp_path):
    import soundfile as sf

    from demixer.audio import load_audio

    files = sorted(shared("speech/librispeech_rtvc").glob("*.flac"))
    for d in ("mix_clean", "s1", "s2"):
        (tmp_path / "librimix" / d).mkdir(parents=True)
    for k in range(2):
        a, sr = load_audio(files[2 * k])
        b, _ = load_audio(files[2 * k + 1])
        n = min(a.shape[1], b.shape[1])
        sf.write(tmp_path / "librimix" / "s1" / f"m{k}.wav", a[0, :n], sr)
        sf.write(tmp_path / "librimix" / "s2" / f"m{k}.wav", b[0, :n], sr)
        sf.write(tmp_path / "librimix" / "mix_clean" / f"m{k}.wav", a[0, :n] + b[0, :n], sr)
    r = run_cli(
        "evaluate", "-n", "oracle-irm", tmp_path / "librimix", "-o", tmp_path / "e1", "--no-progress", "--no-html"
    )
    assert r.returncode == 0, r.stderr
    assert "speakers" in r.stdout and "SI-SDRi" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("oracle-irm")]
    assert all(float(row[3]) > 8 for row in rows), rows  # SI-SDRi of the oracle mask
    # a second model into the same folder: results.csv and the summary keep the first run's models
    r = run_cli(
        "evaluate",
        "-n",
        "oracle-ibm",
        tmp_path / "librimix",
        "-o",
        tmp_path / "e1",
        "--no-progress",
        "--no-html",
        "--no-baseline",
    )
    assert r.returncode == 0, r.stderr
    models = {line.split(",")[0] for line in (tmp_path / "e1" / "results.csv").read_text().splitlines()[1:]}
    assert models == {"oracle-irm", "oracle-ibm", "mixture"}
    assert [line.split()[:4] for line in r.stdout.splitlines() if line.startswith("oracle-irm")] == [
        row[:4] for row in rows
    ]
    r = run_cli(
        "evaluate",
        "-n",
        "spectral-gate",
        shared("denoising_pairs"),
        "-o",
        tmp_path / "e2",
        "--no-progress",
        "--no-html",
    )
    assert r.returncode == 0, r.stderr
    assert "PESQ-wb" in r.stdout and "ESTOI" in r.stdout


@pytest.mark.slow
def test_inspect_and_separate_report(tmp_path):
    r = run_cli(
        "separate",
        "-n",
        "hpss",
        shared(VALID) / "musdb18_easton_ellises_falcon69_excerpt" / "mixture.flac",
        "-o",
        tmp_path,
        "--report",
    )
    assert r.returncode == 0, r.stderr
    stems = tmp_path / "hpss" / "mixture"
    q = json.loads((stems / "mixture.quality.json").read_text())
    assert q["model"] == "hpss" and set(q["stems"]) == {"drums", "other"} and q["consistency_db"] > 20
    for stem in ("drums", "other"):  # the quality estimator's fields, and its verdict line per stem
        entry = q["stems"][stem]
        assert len(entry["predicted_sdr_per_second"]) == len(entry["silent_source_probability"]) == 6  # 5.9 s
        assert re.search(rf"^    {stem}: predicted -?\d+\.\d dB", r.stdout, re.M), r.stdout
    r = run_cli("inspect", stems, "--reference", shared(VALID) / "musdb18_easton_ellises_falcon69_excerpt")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^drums: predicted -?\d", r.stdout, re.M)
    for name in ("inspect_spectrograms.png", "inspect_predicted_sdr.png", "inspect_sdr.png", "inspect_sir.png"):
        assert (stems / name).read_bytes()[:4] == b"\x89PNG"
    assert re.search(r"^drums\s+SDR\s+-?\d", r.stdout, re.M)
    r = run_cli("inspect", stems / "drums.wav", "-o", tmp_path / "one.png")
    assert r.returncode == 0 and (tmp_path / "one.png").exists()
    r = run_cli("inspect", tmp_path / "nope")
    assert r.returncode == 1 and "does not exist" in r.stderr


@pytest.mark.slow
def test_evaluate_musdb_stem_mp4(tmp_path, valid_track):
    """MUSDB18 .stem.mp4 input: the stems come from the file's streams, the mixture from stream 0."""
    mix, ref, names, sr = valid_track
    write_stem_mp4(tmp_path / "db" / "excerpt.stem.mp4", dict(zip(names, ref)), sr)
    r = run_cli(
        "evaluate",
        "-n",
        "oracle-irm",
        tmp_path / "db",
        "-o",
        tmp_path / "e",
        "--no-progress",
        "--no-html",
        "--no-quality",
    )
    assert r.returncode == 0, r.stderr
    rows = {
        (line.split()[0], line.split()[1]): float(line.split()[2])
        for line in r.stdout.splitlines()
        if line.startswith(("oracle-irm", "mixture"))
    }
    for stem in names:
        assert rows[("oracle-irm", stem)] > rows[("mixture", stem)] + 8, (stem, rows)
    r = run_cli("separate", "-n", "oracle-irm", tmp_path / "db" / "excerpt.stem.mp4", "-o", tmp_path / "s")
    assert r.returncode == 1 and "demixer evaluate -n oracle-irm" in r.stderr


@pytest.mark.slow
def test_evaluate_two_stems_scores_the_rest_against_the_sum_of_the_other_stems(tmp_path):
    """`demixer evaluate --two-stems drums`: X as the model gives it, no_X (the sum of its other stems) against the
    sum of the other references, in a folder of its own."""
    from demixer.audio import load_audio
    from demixer.separation import Separator

    r = run_cli(
        "evaluate",
        "-n",
        "hpss",
        "--two-stems",
        "drums",
        shared(VALID),
        "-o",
        tmp_path / "e",
        "--no-progress",
        "--no-html",
        "--no-quality",
        "--no-baseline",
    )
    assert r.returncode == 0, r.stderr
    track = "musdb18_easton_ellises_falcon69_excerpt"
    metrics = json.loads((tmp_path / "e" / "hpss+drums" / f"{track}.json").read_text())["demixer"]["metrics"]
    assert set(metrics) == {"drums", "no_drums"}
    folder = shared(VALID) / track
    mix, sr = load_audio(folder / "mixture.flac")
    refs = {s: load_audio(folder / f"{s}.flac")[0] for s in ("vocals", "drums", "bass", "other")}
    est = Separator("hpss").separate_tensor(torch.from_numpy(mix), sr)
    rest = refs["vocals"] + refs["bass"] + refs["other"]
    assert metrics["no_drums"]["uSDR"] == pytest.approx(sdr(reference=rest, estimate=est["other"].numpy()), abs=0.01)
    assert metrics["drums"]["uSDR"] == pytest.approx(
        sdr(reference=refs["drums"], estimate=est["drums"].numpy()), abs=0.01
    )
    r = run_cli("evaluate", "-n", "hpss", "--two-stems", "vocals", shared(VALID), "-o", tmp_path / "f", "--no-progress")
    assert r.returncode != 0 and "vocals" in r.stderr  # hpss has no vocals stem: a clear error, no traceback
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_evaluate_follows_linked_track_folders_and_scores_odd_lengths(tmp_path):
    """An evaluation set assembled from links (with a link loop), on a track one sample past whole seconds."""
    import soundfile as sf

    rng = np.random.default_rng(3)
    real = tmp_path / "real"
    for song in ("song_a", "song_b"):
        (real / song).mkdir(parents=True)
        for stem in ("vocals", "drums", "bass", "other"):
            sf.write(
                real / song / f"{stem}.wav", 0.1 * rng.standard_normal((2 * 44100 + 1, 2)).astype(np.float32), 44100
            )
    dataset = tmp_path / "set"
    dataset.mkdir()
    (dataset / "song_a").symlink_to(real / "song_a", target_is_directory=True)
    (dataset / "nested").mkdir()
    (dataset / "nested" / "song_b").symlink_to(real / "song_b", target_is_directory=True)
    (dataset / "nested" / "loop").symlink_to(dataset, target_is_directory=True)  # must not be walked forever
    out = tmp_path / "eval"
    r = run_cli("evaluate", "-n", "hpss", dataset, "-o", out, "--no-progress", timeout=240)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "hpss").glob("*.json")) == ["song_a.json", "song_b.json"]


def test_analysis_from_files_equals_the_in_memory_signals_and_images(tmp_path):
    """The service's block-by-block analysis gives the quality signals of the whole arrays, on a span of the input."""
    import soundfile as sf

    from demixer.audio import load_audio
    from demixer.evaluation.analysis import analyse_separation
    from demixer.evaluation.plots import ImageSketch, _db_spectrogram
    from demixer.evaluation.quality import quality_signals

    rng = np.random.default_rng(5)
    sr, n, start, duration = 16000, 16000 * 75, 0.5, 70.0  # longer than the 60 s excerpts and than one block
    stems = {k: (0.2 * rng.standard_normal((2, n))).astype(np.float32) for k in ("vocals", "drums")}
    stems["drums"][:, : n // 4] = 0
    mix = (sum(stems.values()) + 0.01 * rng.standard_normal((2, n))).astype(np.float32)
    sf.write(tmp_path / "mix.flac", mix.T, sr, subtype="PCM_24")
    first, count = int(start * sr), int(duration * sr)
    paths = {}
    for k, v in stems.items():
        paths[k] = tmp_path / f"{k}.wav"
        sf.write(paths[k], v[:, first : first + count].T, sr, subtype="FLOAT")
    whole, _ = load_audio(tmp_path / "mix.flac", start=start, duration=duration)
    expected = quality_signals(whole, {k: load_audio(p)[0] for k, p in paths.items()}, sr)
    got = analyse_separation(tmp_path / "mix.flac", paths, start=start, duration=duration, images=tmp_path / "img")
    assert got == expected
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == sorted(
        f"{k}.{kind}.png" for k in ("mixture", "vocals", "drums") for kind in ("waveform", "spectrogram")
    )
    x = whole.mean(0)
    sketch = ImageSketch(x.size, sr)
    for lo in range(0, x.size, 99_991):  # blocks of any size give the spectrogram of the whole signal
        sketch.add(x[lo : lo + 99_991])
    np.testing.assert_array_equal(sketch.spectrogram_db(), _db_spectrogram(whole, sr))
