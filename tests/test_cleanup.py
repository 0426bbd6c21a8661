"""``demixer clean``: loudness and true peak against pyloudnorm, the limiter, the options, and the whole chain
through the real CLI with provenance records and ``demixer verify``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demixer.audio import load_audio
from demixer.cleanup.loudness import LoudnessMeter, TruePeakLimiter, TruePeakMeter
from demixer.cleanup.options import CleanOptions
from demixer.errors import OptionsError

from .conftest import run_cli, shared


def _true_peak_db(x: np.ndarray) -> float:
    """Reference true peak: the whole signal oversampled 8 times at once (no blocks, no state)."""
    from scipy.signal import resample_poly

    return float(20 * np.log10(np.abs(resample_poly(x, 8, 1, axis=-1)).max()))


@pytest.mark.parametrize("rel", ["mixtures_only/librosa_vibe_ace_kevin_macleod_20s.flac", "speech/vctk_rtvc"])
def test_streamed_loudness_equals_pyloudnorm(rel):
    import pyloudnorm

    path = shared(rel)
    path = path if path.is_file() else sorted(path.iterdir())[0]
    x, sr = load_audio(path)
    meter = LoudnessMeter(sr, x.shape[0])
    for i in range(0, x.shape[1], 10007):  # blocks that fall anywhere in the 100 ms gating steps
        meter.add(x[:, i : i + 10007])
    assert meter.integrated() == pytest.approx(pyloudnorm.Meter(sr).integrated_loudness(x.T), abs=1e-4)


def test_loudness_of_silence_and_of_a_too_short_clip_is_minus_infinity():
    meter = LoudnessMeter(16000, 1)
    meter.add(np.zeros((1, 16000)))
    assert meter.integrated() == float("-inf")
    short = LoudnessMeter(16000, 1)
    short.add(np.ones((1, 1000)) * 0.1)
    assert short.integrated() == float("-inf")


def test_true_peak_meter_sees_the_peak_between_samples():
    sr = 48000
    t = np.arange(sr) / sr
    x = 0.5 * np.sin(2 * np.pi * (sr / 4) * t + np.pi / 4)[None]  # samples at ±0.354, the wave peaks at 0.5
    meter = TruePeakMeter(1)
    for i in range(0, sr, 999):
        meter.add(x[:, i : i + 999])
    assert 20 * np.log10(np.abs(x).max()) == pytest.approx(-9.03, abs=0.01)  # the sample peak misses 3 dB
    assert meter.dbtp() == pytest.approx(_true_peak_db(x), abs=0.1)
    assert meter.dbtp() == pytest.approx(20 * np.log10(0.5), abs=0.2)


def test_limiter_keeps_the_true_peak_under_the_ceiling_and_leaves_quiet_parts_alone():
    x, sr = load_audio(shared("mixtures_only/librosa_vibe_ace_kevin_macleod_20s.flac"))
    loud = x * 4.0  # about 9 dB over full scale at its peaks
    limiter = TruePeakLimiter(sr, 2, -1.0)
    out = np.concatenate([limiter.process(loud[:, i : i + 4096]) for i in range(0, loud.shape[1], 4096)], axis=1)
    out = np.concatenate([out, limiter.flush()], axis=1)
    assert out.shape == loud.shape
    assert _true_peak_db(out) <= -1.0 + 0.05
    assert limiter.min_gain < 0.5
    quiet = x * 0.05  # never near the ceiling: the output is the input, sample for sample
    limiter = TruePeakLimiter(sr, 2, -1.0)
    out = np.concatenate([limiter.process(quiet), limiter.flush()], axis=1)
    np.testing.assert_allclose(out, quiet, atol=1e-7)


def test_clean_options_name_the_bad_flag():
    assert CleanOptions().lufs == -16.0 and CleanOptions().true_peak == -1.0
    for bad, flag in [
        (dict(skip="dialogue,reverb"), "--skip"),
        (dict(keep_music=1.5), "--keep-music"),
        (dict(keep_music=0.2, skip=["dialogue"]), "--keep-music"),
        (dict(lufs=3.0), "--lufs"),
        (dict(true_peak=2.0), "--true-peak"),
        (dict(format="mp3"), "--format"),
    ]:
        with pytest.raises(OptionsError, match=flag):
            CleanOptions(**bad)
    with pytest.raises(OptionsError, match="unknown option"):
        CleanOptions.from_mapping({"loudness": -16})


# -- the whole chain, through the real CLI ---------------------------------------------------------------


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> Path:
    """Real speech with a real song under it, stereo 44.1 kHz, 12 s: a podcast intro."""
    folder = tmp_path_factory.mktemp("talk")
    speech, _ = load_audio(sorted(shared("speech/vctk").iterdir())[0], sample_rate=44100, mono=True)
    music, _ = load_audio(shared("mixtures_only/librosa_vibe_ace_kevin_macleod_20s.flac"), sample_rate=44100)
    n = 12 * 44100
    voice = np.tile(speech, (2, 1 + n // speech.shape[1]))[:, :n]
    mix = 0.3 * voice + 0.05 * music[:, :n]
    path = folder / "talk.flac"
    sf.write(path, mix.T, 44100)
    return path


@pytest.mark.slow
def test_clean_meets_the_loudness_target_and_ceiling_and_writes_its_report(talk, tmp_path):
    import pyloudnorm

    original = talk.read_bytes()
    r = run_cli("clean", str(talk), "-o", str(tmp_path), "--lufs", "-16", "--true-peak", "-1")
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "talk"
    report = json.loads((folder / "report.json").read_text())
    y, sr = load_audio(folder / "speech.wav")
    assert sr == 44100 and y.shape[0] == 2
    assert pyloudnorm.Meter(sr).integrated_loudness(y.T) == pytest.approx(-16.0, abs=0.5)
    assert _true_peak_db(y) < -1.0 + 0.05
    assert report["stages"]["dialogue"]["present"]["music"]
    assert report["stages"]["dereverb"]["applied"] is False and "not offered" in report["stages"]["dereverb"]["why"]
    assert set(report["removed"]) == {"music", "effects", "noise"}
    assert "separated from music and effects" in r.stdout and "LUFS" in r.stdout

    # without the limiter, what was removed (at the same gain) plus the speech is the input at that gain
    r = run_cli("clean", str(talk), "-o", str(tmp_path / "nolimit"), "--skip", "limit")
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "nolimit" / "talk"
    gain = 10 ** (json.loads((folder / "report.json").read_text())["stages"]["loudness"]["gain_db"] / 20)
    x, _ = load_audio(talk)
    y, _ = load_audio(folder / "speech.wav")
    parts = sum(load_audio(folder / "removed" / f"{n}.wav")[0] for n in ("music", "effects", "noise"))
    assert np.abs(x * gain - parts - y).max() < 1e-3 * np.abs(x * gain).max()
    assert talk.read_bytes() == original  # the original is never modified


@pytest.mark.slow
def test_clean_stages_can_be_skipped_and_music_kept_under_the_speech(talk, tmp_path):
    r = run_cli("clean", str(talk), "-o", str(tmp_path / "a"), "--skip", "dialogue,denoise", "--lufs", "-20")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "a" / "talk" / "report.json").read_text())
    assert not report["stages"]["dialogue"]["applied"] and not report["stages"]["denoise"]["applied"]
    assert report["removed"] == {}
    assert report["loudness_out_lufs"] == pytest.approx(-20.0, abs=0.5)
    r = run_cli("clean", str(talk), "-o", str(tmp_path / "b"), "--keep-music", "0.3", "--skip", "denoise")
    assert r.returncode == 0, r.stderr
    kept = json.loads((tmp_path / "b" / "talk" / "report.json").read_text())
    assert kept["stages"]["dialogue"]["applied"]
    r = run_cli("clean", str(talk), "-o", str(tmp_path / "b"), "--skip", "denoise")
    assert r.returncode == 1 and "output exists" in r.stderr  # never overwritten without --overwrite
    r = run_cli("clean", str(talk), "--keep-music", "2")
    assert r.returncode == 2 and "--keep-music" in r.stderr
    r = run_cli("clean", str(talk), "-o", str(tmp_path / "c"), "--skip", "dialogue", "--denoiser", "deepfilternet3")
    assert r.returncode == 0, r.stderr
    dfn = json.loads((tmp_path / "c" / "talk" / "report.json").read_text())
    assert dfn["stages"]["denoise"] == {"model": "deepfilternet3", "applied": True}
    assert dfn["loudness_out_lufs"] == pytest.approx(-16.0, abs=0.5)


@pytest.mark.slow
def test_provenance_round_trips_and_verify_names_what_changed(talk, tmp_path):
    r = run_cli("clean", str(talk), "-o", str(tmp_path), "--provenance")
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "talk"
    record_path = folder / "provenance.json"
    record = json.loads(record_path.read_text())
    assert record["input"]["sha256"] and record["input"]["sample_rate"] == 44100
    assert set(record["outputs"]) == {"speech", "music", "effects", "noise", "report"}
    assert record["options"]["lufs"] == -16.0 and record["options"]["true_peak"] == -1.0  # defaults included
    assert {m["name"] for m in record["models"]} == {"demixer-dialogue", "demixer-denoise"}
    assert all(w["sha256"] for m in record["models"] for w in m["weights"])
    assert record["environment"]["libraries"]["torch"] and record["determinism"]["seed"] == 0
    assert record["started_utc"] <= record["finished_utc"]
    assert "dnsmos" in record["quality"] and record["chain"]
    assert "provenance" in (folder / "provenance.html").read_text().lower()

    r = run_cli("verify", str(record_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reproduced bit for bit" in r.stdout and "DIFFERS" not in r.stdout

    # one changed byte in an output is detected (and the re-run says how far the audio is off)
    speech = folder / "speech.wav"
    data = bytearray(speech.read_bytes())
    data[-10] ^= 0x01
    speech.write_bytes(bytes(data))
    r = run_cli("verify", str(record_path), "--no-rerun")
    assert r.returncode == 1
    assert "output speech" in r.stdout and "has changed" in r.stdout

    # a changed option is named, and the re-run with it no longer reproduces the outputs
    record["options"]["lufs"] = -14.0
    record_path.write_text(json.dumps(record))
    r = run_cli("verify", str(record_path))
    assert r.returncode == 1
    assert "option(s) changed after the record was written: lufs" in r.stdout
    assert "re-run: output speech differs" in r.stdout


def test_silence_and_clips_too_short_to_measure_are_cleaned_without_a_gain(tmp_path):
    import demixer

    for name, audio in (
        ("silent", np.zeros(3 * 16000)),
        ("short", 0.1 * np.random.default_rng(0).standard_normal(3000)),
    ):
        sf.write(tmp_path / f"{name}.wav", audio.astype(np.float32), 16000)
        result = demixer.clean(tmp_path / f"{name}.wav", out=str(tmp_path / "out"), skip=["dialogue", "denoise"])
        stage = result.report["stages"]["loudness"]
        assert stage["applied"] is False and "no measurable loudness" in stage["why"]
        assert result.report["loudness_out_lufs"] is None and "level was not changed" in result.report["chain"]
        y, _ = sf.read(result.outputs["speech"])
        x, _ = sf.read(tmp_path / f"{name}.wav")
        np.testing.assert_allclose(y, x, atol=1e-7)  # passed through untouched (16-bit in, 24-bit out)


def test_two_inputs_with_one_track_name_get_their_own_folders(tmp_path):
    from demixer.cleanup import Cleaner

    cleaner = Cleaner(out=str(tmp_path / "out"), skip=["dialogue", "denoise"])
    folders = cleaner.track_folders([Path("a/talk.wav"), Path("b/talk.flac"), Path("c/other.mp3")])
    assert [f.name for f in folders] == ["talk", "talk-2", "other"]


def test_a_failure_midway_leaves_no_output_behind(tmp_path):
    from demixer.cleanup import Cleaner
    from demixer.errors import AudioError

    audio = (0.1 * np.random.default_rng(0).standard_normal(3 * 16000)).astype(np.float32)
    audio[30000] = np.nan  # found while the first stage streams the file, after the checks of its header
    sf.write(tmp_path / "bad.wav", audio, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        Cleaner(out=str(tmp_path / "out"), skip=["dialogue"]).clean_file(tmp_path / "bad.wav")
    assert not (tmp_path / "out" / "bad").exists()
