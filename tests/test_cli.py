"""The real command line, end to end: real files in, files out, exit codes and messages."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demixer.audio import OutputFormat, load_audio, probe, save_audio
from demixer.evaluation import sdr
from demixer.models import task_defaults

from .conftest import ROOT, shared, tone

EXAMPLE = ROOT / "src" / "demixer" / "examples" / "example.flac"


def outputs_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def make_corpus(d: Path) -> dict[str, tuple[Path, str | None]]:
    """Bad and unusual inputs -> (path, expected error fragment or None for success)."""
    d.mkdir()
    good = save_audio(d / "good.wav", tone(1.0), 44100)
    corrupt = d / "corrupt_header.wav"
    corrupt.write_bytes(b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x07\x00" + bytes(200))
    truncated = d / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("hello, I am a text file pretending to be audio\n" * 10)
    x = tone(0.5, 16000, 1)
    x[0, 100] = np.nan
    sf.write(d / "nan.wav", x.T, 16000, subtype="FLOAT")
    save_audio(d / "one_sample.wav", np.array([[0.1], [0.2]], np.float32), 44100)
    save_audio(d / "silence.wav", np.zeros((2, 44100), np.float32), 44100)
    save_audio(d / "eight_ch.wav", tone(0.5, 48000, 8), 48000)
    save_audio(d / "rate_8k.wav", tone(1.0, 8000, 1), 8000)
    save_audio(d / "rate_192k.flac", tone(0.5, 192000, 2), 192000, OutputFormat("flac", "int24"))
    return {
        "corrupt_header": (corrupt, "unreadable"),
        "truncated": (truncated, "truncated"),
        "empty": (d / "empty.wav", "empty file"),
        "text": (d / "text.wav", "unreadable"),
        "nan": (d / "nan.wav", "NaN or infinite samples"),
        "one_sample": (d / "one_sample.wav", None),
        "silence": (d / "silence.wav", None),
        "eight_ch": (d / "eight_ch.wav", None),
        "rate_8k": (d / "rate_8k.wav", None),
        "rate_192k": (d / "rate_192k.flac", None),
        "missing": (d / "does_not_exist.wav", "no such file"),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus") / "in")


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        "corrupt_header",
        "truncated",
        "empty",
        "text",
        "nan",
        "one_sample",
        "silence",
        "eight_ch",
        "rate_8k",
        "rate_192k",
        "missing",
    ],
)
def test_bad_input_corpus(cli, corpus, tmp_path, case):
    path, error = corpus[case]
    out = tmp_path / "sep"
    r = cli("separate", "-n", "hpss", "-o", out, path)
    if error is None:
        assert r.returncode == 0, r.stderr
        files = outputs_under(out)
        assert [f.name for f in files] == ["drums.wav", "other.wav"]
        src = probe(path)
        for f in files:  # output keeps the input's rate, channel count and length
            info = probe(f)
            assert (info.sample_rate, info.channels, info.frames) == (src.sample_rate, src.channels, src.frames)
            y, _ = load_audio(f)
            assert np.isfinite(y).all()
    else:
        assert r.returncode == 1
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and error in errors[0] and path.name in errors[0], r.stderr
        assert not out.exists() or list(out.rglob("*")) == []  # no partial output, no work files, no empty folders


@pytest.mark.slow
def test_batch_with_bad_files_keeps_going(cli, corpus, tmp_path):
    out = tmp_path / "sep"
    r = cli("separate", "-n", "hpss", "-o", out, corpus["silence"][0], corpus["text"][0], corpus["rate_8k"][0])
    assert r.returncode == 1
    assert "1 of 3 input(s) failed" in r.stderr
    assert {f.parent.name for f in outputs_under(out)} == {"silence", "rate_8k"}


@pytest.mark.slow
def test_end_to_end_real_music(cli, tmp_path):
    track = shared("music/valid/musdb18_easton_ellises_falcon69_excerpt/mixture.flac")
    out = tmp_path / "sep"
    r = cli("separate", "-n", "center", "-o", out, "--flac", "--int24", track)
    assert r.returncode == 0, r.stderr
    assert "RTF" in r.stderr
    vocals = out / "center" / "mixture" / "vocals.flac"
    info, src = probe(vocals), probe(track)
    assert (info.sample_rate, info.channels, info.frames) == (src.sample_rate, src.channels, src.frames)
    assert sf.info(str(vocals)).subtype == "PCM_24"
    # the stems add back up to the mixture
    mix = load_audio(track)[0]
    total = load_audio(vocals)[0] + load_audio(out / "center" / "mixture" / "no_vocals.flac")[0]
    assert np.abs(total - mix).max() < 1e-3


@pytest.mark.slow
def test_existing_outputs_need_overwrite(cli, tmp_path):
    src = save_audio(tmp_path / "song.wav", tone(1.0), 44100)
    out = tmp_path / "sep"
    assert cli("separate", "-n", "hpss", "-o", out, src).returncode == 0
    before = (out / "hpss" / "song" / "drums.wav").stat().st_mtime_ns
    r = cli("separate", "-n", "hpss", "-o", out, src)
    assert r.returncode == 1 and "--overwrite" in r.stderr
    assert (out / "hpss" / "song" / "drums.wav").stat().st_mtime_ns == before
    assert cli("separate", "-n", "hpss", "-o", out, "--overwrite", src).returncode == 0


@pytest.mark.slow
def test_folders_globs_and_no_collisions(cli, tmp_path):
    for sub in ("a", "b"):
        save_audio(tmp_path / "in" / sub / "song.wav", tone(0.5), 44100)
    save_audio(tmp_path / "in" / "b" / "song.flac", tone(0.5), 44100, OutputFormat("flac"))
    out = tmp_path / "sep"
    r = cli(
        "separate",
        "-n",
        "hpss",
        "-o",
        out,
        "-j",
        "2",
        "--two-stems",
        "drums",
        "--filename",
        "{track}_{stem}.{ext}",
        tmp_path / "in",
    )
    assert r.returncode == 0, r.stderr
    names = sorted(f.name for f in outputs_under(out))
    assert names == [
        "song-2_drums.wav",
        "song-2_no_drums.wav",
        "song-3_drums.wav",
        "song-3_no_drums.wav",
        "song_drums.wav",
        "song_no_drums.wav",
    ]
    r = cli("separate", "-n", "hpss", "-o", tmp_path / "g", "--stems", "other", str(tmp_path / "in" / "**" / "*.flac"))
    assert r.returncode == 0, r.stderr
    assert [f.name for f in outputs_under(tmp_path / "g")] == ["other.wav"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags, ext, subtype",
    [
        ((), "wav", "PCM_16"),
        (("--int24",), "wav", "PCM_24"),
        (("--float32",), "wav", "FLOAT"),
        (("--flac",), "flac", "PCM_16"),
        (("--mp3", "--mp3-bitrate", "128"), "mp3", None),
    ],
)
def test_output_formats(cli, tmp_path, flags, ext, subtype):
    src = save_audio(tmp_path / "x.wav", tone(1.0), 44100)
    r = cli("separate", "-n", "hpss", "-o", tmp_path / "o", *flags, src)
    assert r.returncode == 0, r.stderr
    f = tmp_path / "o" / "hpss" / "x" / f"drums.{ext}"
    assert f.exists()
    if subtype:
        assert sf.info(str(f)).subtype == subtype


@pytest.mark.slow
def test_clip_mode_rescale_logs_the_change(cli, tmp_path):
    loud = np.clip(tone(1.0, 44100, 2, amp=1.0) * 1.0, -1, 1)
    loud[:, ::2] *= -1  # maximally bright: HPSS stems can exceed full scale
    src = save_audio(tmp_path / "loud.wav", loud, 44100, OutputFormat("wav", "float32"))
    r = cli("separate", "-n", "hpss", "-o", tmp_path / "o", "--float32", src)
    assert r.returncode == 0
    peak = max(np.abs(load_audio(p)[0]).max() for p in outputs_under(tmp_path / "o"))
    if "levels changed" in r.stderr:
        assert peak <= 1.0
    r2 = cli("separate", "-n", "hpss", "-o", tmp_path / "o2", "--clip-mode", "none", "--float32", src)
    assert r2.returncode == 0 and "levels changed" not in r2.stderr


@pytest.mark.slow
def test_start_duration_and_options_errors(cli, tmp_path):
    src = save_audio(tmp_path / "x.wav", tone(3.0, 16000, 1), 16000)
    r = cli(
        "separate",
        "--task",
        "denoise",
        "--atten-lim",
        "12",
        "--start",
        "1",
        "--duration",
        "1.5",
        "-o",
        tmp_path / "o",
        src,
    )
    assert r.returncode == 0, r.stderr
    assert probe(tmp_path / "o" / task_defaults()["denoise"] / "x" / "speech.wav").frames == 24000
    r = cli("separate", "--overlap", "2", src)
    assert r.returncode == 2 and "--overlap" in r.stderr
    r = cli("separate", "--flac", "--mp3", src)
    assert r.returncode == 2 and "exclude" in r.stderr
    r = cli("separate", "-n", "no-such-model", src)
    assert r.returncode == 1 and "unknown model" in r.stderr
    r = cli("separate", "--task", "extract", src)  # demixer-extract: it needs the voice to keep
    assert r.returncode == 2 and "--enroll" in r.stderr


@pytest.mark.slow
def test_models_list_env_and_module_entry(cli):
    r = cli("models", "list", "--json")
    assert r.returncode == 0
    rows = json.loads(r.stdout)
    assert {"hpss", "repet-sim", "center", "spectral-gate"} <= {m["name"] for m in rows}
    text = cli("separate", "--list-models").stdout
    defaults, models = text.split("\n\n", 1)  # the default per task and why, then the models
    assert all(f"  {task:<9} {task_defaults()[task]} " in defaults for task in ("music", "speakers"))
    listed = models.splitlines()
    assert len([line for line in listed if not line.startswith(" ")]) == len(rows)  # one line per model
    assert len([line for line in listed if line.lstrip().startswith("--fast:")]) == sum(bool(m["fast"]) for m in rows)
    r = cli("env")
    assert r.returncode == 0 and "torch" in r.stdout and "model cache" in r.stdout and "ffmpeg" in r.stdout
    assert "cpu features" in r.stdout and "VNNI" in r.stdout


@pytest.mark.slow
def test_example_demo(cli, tmp_path):
    r = cli("separate", "--example", "-o", tmp_path / "demo")
    assert r.returncode == 0, r.stderr
    assert "stems written" in r.stdout
    from demixer.models import load_model

    music = task_defaults()["music"]
    assert len(outputs_under(tmp_path / "demo" / music)) == len(load_model(music).sources)


@pytest.mark.slow
def test_checkpoint_path_works_as_model_name(cli, tmp_path):
    import torch

    from demixer.models import load_model, save_checkpoint
    from demixer.models.tiny import TinyMaskConfig, TinyMaskModel

    torch.manual_seed(3)
    model = TinyMaskModel(TinyMaskConfig(sources=("a", "b"), sample_rate=16000))
    ckpt = save_checkpoint(model, tmp_path / "my_model.safetensors")
    x = torch.from_numpy(tone(0.5, 16000, 2))[None]
    torch.testing.assert_close(load_model(ckpt)(x), model.eval()(x))
    src = save_audio(tmp_path / "x.wav", tone(1.0, 16000, 2), 16000)
    r = cli("separate", "-n", ckpt, "-o", tmp_path / "o", src)
    assert r.returncode == 0, r.stderr
    assert sorted(f.name for f in outputs_under(tmp_path / "o" / "my_model")) == ["a.wav", "b.wav"]


@pytest.mark.slow
def test_ffmpeg_input_through_the_pipeline(cli, tmp_path):
    import subprocess

    src = save_audio(tmp_path / "src.wav", tone(2.0, 48000, 2), 48000)
    m4a = tmp_path / "clip.m4a"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), "-c:a", "aac", "-b:a", "128k", str(m4a)], check=True
    )
    r = cli("separate", "-n", "center", "-o", tmp_path / "o", m4a)
    assert r.returncode == 0, r.stderr
    decoded, sr = load_audio(m4a)
    stems = [load_audio(tmp_path / "o" / "center" / "clip" / f"{s}.wav")[0] for s in ("vocals", "no_vocals")]
    assert sr == 48000 and all(s.shape == decoded.shape for s in stems)
    # the model runs at 44.1 kHz: only the 22.05-24 kHz band of this 48 kHz input (-50 dB noise here) is not in any stem
    assert np.abs(stems[0] + stems[1] - decoded).max() < 5e-3
    assert sdr(reference=decoded, estimate=stems[0] + stems[1]) > 30


@pytest.mark.parametrize("verbose", [False, True])
def test_an_unexpected_fault_ends_as_one_error_line(monkeypatch, capsys, verbose):
    """Any uncaught exception in a command: `demixer: error: ...` on one line and exit 1; the traceback
    with --verbose."""
    from demixer.cli import env, main

    def broken(args):
        raise ValueError("all input arrays\n must have the same shape")

    monkeypatch.setattr(env, "run", broken)
    code = main.main(["--verbose", "env"] if verbose else ["env"])
    err = capsys.readouterr().err
    assert code == 1
    assert "demixer: error: ValueError: all input arrays must have the same shape" in err
    assert ("Traceback (most recent call last)" in err) == verbose
    if not verbose:
        assert err.strip().count("\n") == 0 and "--verbose" in err


@contextlib.contextmanager
def _tmpfs(where: Path, options: str):
    """A small tmpfs mounted for the test (root only); skips with a reason where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.slow
def test_output_side_faults_get_one_line_each(cli, tmp_path):
    """A file in the way, a read-only folder, a full disk, a long name, an absurd header, odd inputs."""
    example = tmp_path / "song.flac"
    shutil.copy(EXAMPLE, example)
    in_the_way = tmp_path / "afile"
    in_the_way.write_text("x")
    for out, says in ((in_the_way, "it is a file"), (in_the_way / "sub", f"under {in_the_way}, which is a file")):
        r = cli("separate", example, "-o", out)
        assert r.returncode == 1 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().count("\n") == 0, r.stderr

    with _tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        r = cli("separate", example, "-o", ro / "out")
        assert r.returncode == 1 and "read-only file system" in r.stderr and "Traceback" not in r.stderr, r.stderr

    second = tmp_path / "second.flac"
    shutil.copy(EXAMPLE, second)
    with _tmpfs(tmp_path / "full", "size=256k") as full:  # the first stems fill it
        r = cli("separate", example, second, "-o", full / "out")
        assert r.returncode == 1 and "no space left on the device" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and "2 of 2 input(s) not separated" in r.stderr, r.stderr
        assert not [p for p in full.rglob("*") if p.is_file()], "no partial file is left on the full disk"

    long = tmp_path / f"{'x' * 240}.flac"  # the final names fit in 255 bytes; the temporary ones must too
    shutil.copy(EXAMPLE, long)
    ghz = tmp_path / "ghz.wav"
    data = np.zeros(1000, np.int16).tobytes()
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 2_000_000_000, 4_000_000_000 % 2**32, 2, 16)
    ghz.write_bytes(
        b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    empty_folder = tmp_path / "folder.wav"
    empty_folder.mkdir()
    r = cli(
        "separate",
        ghz,
        "/dev/zero",
        fifo,
        empty_folder,
        tmp_path / "none*.wav",
        long,
        "--filename",
        "{track}_{stem}.{ext}",
        "-o",
        tmp_path / "out",
    )
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert any(f"error: {ghz}: unsupported sample rate 2000000000 Hz" in line for line in lines), r.stderr
    assert any(f"error: {fifo}: not a regular file" in line for line in lines), r.stderr
    assert any("error: /dev/zero: not a regular file" in line for line in lines), r.stderr
    assert any("folder with no audio files" in line and "folder.wav" in line for line in lines), r.stderr
    assert any("no file matches" in line for line in lines), r.stderr
    assert "Traceback" not in r.stderr and "3 of 4 input(s) failed" in r.stderr, r.stderr
    r = cli("separate", "-n", "hpss", "--segment", "1000", example, "-o", tmp_path / "capped")
    assert r.returncode == 0 and "--segment: 1000 is above the limit of 900" in r.stderr, r.stderr
    assert len(list((tmp_path / "out").rglob(f"{'x' * 240}_*.wav"))) == 4, "the long-named input was separated"


@pytest.mark.slow
def test_truncated_files_warn_or_fail_without_decoder_noise(cli, tmp_path):
    """A cut Ogg is separated with a warning that it ended early; a cut MP3 fails in one line, and what the MP3
    decoder prints ("Warning: Xing ...") goes to --verbose only. Batch failures name their input."""
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=5",
            "-c:a",
            "libvorbis",
            tmp_path / "full.ogg",
        ],
        check=True,
    )
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=f=440:d=3", "-ac", "2", tmp_path / "full.mp3"],
        check=True,
    )
    (tmp_path / "in").mkdir()
    for name, keep in (("cut.ogg", 6000), ("cut.mp3", 20000)):
        (tmp_path / "in" / name).write_bytes((tmp_path / f"full{Path(name).suffix}").read_bytes()[:keep])
    shutil.copy(tmp_path / "full.ogg", tmp_path / "in" / "whole.ogg")
    r = cli("separate", "-n", "hpss", tmp_path / "in", "-o", tmp_path / "out")
    assert r.returncode == 1, r.stderr
    assert "cut.ogg: the Ogg stream ends early" in r.stderr and "whole.ogg: the Ogg" not in r.stderr, r.stderr
    assert f"error: {tmp_path / 'in' / 'cut.mp3'}: truncated file" in r.stderr, r.stderr
    assert "Xing" not in r.stderr and "1 of 3 input(s) failed" in r.stderr, r.stderr
    verbose = cli("-v", "separate", "-n", "hpss", tmp_path / "in" / "cut.mp3", "-o", tmp_path / "out2")
    assert "decoder: Warning: Xing" in verbose.stderr, verbose.stderr
    r = cli("batch", tmp_path / "in", "-n", "hpss", "-o", tmp_path / "batch", "--no-progress")
    assert r.returncode == 1 and f"error: {tmp_path / 'in' / 'cut.mp3'}: truncated file" in r.stderr, r.stderr
