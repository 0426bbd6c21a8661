"""Audio I/O: round trips across formats, bit depths, rates and channel counts; errors; atomic writes."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf

from demixer.audio import (
    AudioWriter,
    OutputFormat,
    StreamResampler,
    channel_groups,
    iter_blocks,
    load_audio,
    merge_channels,
    probe,
    resample,
    save_audio,
    split_channels,
)
from demixer.errors import AudioError

from .conftest import tone


@pytest.mark.parametrize(
    "fmt, tol",
    [
        (OutputFormat("wav", "int16"), 1 / 2**15 + 1e-7),
        (OutputFormat("wav", "int24"), 1 / 2**23 + 1e-7),
        (OutputFormat("wav", "float32"), 0.0),
        (OutputFormat("flac", "int16"), 1 / 2**15 + 1e-7),
        (OutputFormat("flac", "int24"), 1 / 2**23 + 1e-7),
    ],
)
@pytest.mark.parametrize("sr, channels", [(8000, 1), (44100, 2), (48000, 6), (192000, 8)])
def test_lossless_round_trip(tmp_path, fmt, tol, sr, channels):
    x = tone(0.25, sr, channels)
    path = save_audio(tmp_path / f"x.{fmt.extension}", x, sr, fmt)
    y, rate = load_audio(path)
    assert rate == sr and y.shape == x.shape
    assert np.abs(y - x).max() <= tol


@pytest.mark.parametrize("channels", [1, 2])
def test_mp3_round_trip_keeps_rate_channels_and_bitrate(tmp_path, channels):
    x = tone(1.0, 44100, channels)
    path = save_audio(tmp_path / "x.mp3", x, 44100, OutputFormat("mp3", mp3_bitrate=192))
    info = probe(path)
    assert info.sample_rate == 44100 and info.channels == channels
    y, _ = load_audio(path)
    # mp3 adds encoder delay/padding; the content must still be the tone (high correlation after alignment)
    n = min(y.shape[1], x.shape[1]) - 4096
    lag = int(np.argmax(np.correlate(y[0, 2048:6144], x[0, :4096], "valid"))) if y.shape[1] > 8192 else 0
    seg = y[0, lag : lag + n]
    assert np.corrcoef(seg, x[0, : seg.size])[0, 1] > 0.95
    kbps = path.stat().st_size * 8 / 1000 / 1.0
    assert 150 < kbps < 260, kbps


@pytest.mark.parametrize("ext, codec", [("m4a", "aac"), ("opus", "libopus"), ("webm", "libopus"), ("ogg", "libvorbis")])
def test_reads_ffmpeg_formats(tmp_path, ext, codec):
    src = save_audio(tmp_path / "src.wav", tone(1.0, 48000, 2), 48000)
    out = tmp_path / f"x.{ext}"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), "-c:a", codec, "-b:a", "128k", str(out)], check=True
    )
    y, sr = load_audio(out)
    assert sr == 48000 and y.shape[0] == 2
    assert abs(y.shape[1] - 48000) < 2048  # container priming/padding only
    assert 0.3 < np.abs(y).max() < 0.7


def test_int_wav_inputs_are_scaled_to_float(tmp_path):
    x = (tone(0.1, 16000, 1) * 32767).astype(np.int16)
    sf.write(tmp_path / "i.wav", x.T, 16000, subtype="PCM_16")
    y, _ = load_audio(tmp_path / "i.wav")
    assert y.dtype == np.float32 and np.abs(y).max() <= 1.0


def test_start_and_duration(tmp_path):
    x = tone(2.0, 8000, 1)
    path = save_audio(tmp_path / "x.wav", x, 8000, OutputFormat("wav", "float32"))
    y, _ = load_audio(path, start=0.5, duration=1.0)
    np.testing.assert_array_equal(y, x[:, 4000:12000])


def test_streaming_blocks_equal_whole_read(tmp_path):
    x = tone(1.3, 22050, 2)
    path = save_audio(tmp_path / "x.flac", x, 22050, OutputFormat("flac", "int24"))
    blocks = list(iter_blocks(path, block_frames=1000))
    assert all(b.shape[1] == 1000 for b in blocks[:-1])
    np.testing.assert_array_equal(np.concatenate(blocks, 1), load_audio(path)[0])


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"this is not audio, just text\n" * 20, "unreadable"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + bytes(range(256)) * 4, "unreadable"),
    ],
)
def test_bad_files_raise_one_line_errors(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert reason in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_wav_and_flac_are_reported(tmp_path):
    for fmt in (OutputFormat("wav", "int16"), OutputFormat("flac", "int16")):
        path = save_audio(tmp_path / f"x.{fmt.extension}", tone(1.0), 44100, fmt)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(AudioError, match="truncated"):
            load_audio(path)


def test_nan_samples_are_rejected(tmp_path):
    x = tone(0.5, 16000, 1)
    x[0, 4000] = np.nan
    sf.write(tmp_path / "nan.wav", x.T, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"NaN or infinite samples \(first at 0.250 s\)"):
        load_audio(tmp_path / "nan.wav")


def test_writer_is_atomic(tmp_path):
    target = tmp_path / "out" / "x.wav"
    with AudioWriter(target, 44100, 2) as w:
        w.write(tone(0.1))
        assert not target.exists()  # only the hidden temporary file exists while writing
    assert not target.exists() and list(target.parent.iterdir()) == []  # no commit: nothing left
    with AudioWriter(target, 44100, 2) as w:
        w.write(tone(0.1))
        w.commit()
    assert target.exists() and len(list(target.parent.iterdir())) == 1
    assert target.stat().st_mode & 0o044  # readable by others like any file, not left private by mkstemp


def test_save_clamps_instead_of_wrapping(tmp_path):
    x = np.array([[0.5, 1.7, -2.0, 0.0]], np.float32)
    y, _ = load_audio(save_audio(tmp_path / "c.wav", x, 8000))
    assert y[0, 1] > 0.99 and y[0, 2] < -0.99


@pytest.mark.parametrize("orig, target", [(44100, 16000), (8000, 48000), (192000, 44100)])
def test_stream_resampler_matches_whole_array(orig, target):
    x = tone(1.0, orig, 2)
    whole = resample(x, orig, target)
    r = StreamResampler(orig, target, 2, total_out=whole.shape[1])
    parts = [r.process(x[:, i : i + 3000]) for i in range(0, x.shape[1], 3000)] + [r.flush()]
    streamed = np.concatenate(parts, axis=1)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - whole)[:, 100:-100].max() < 1e-3


@pytest.mark.parametrize(
    "channels, model_channels, n_groups", [(1, 2, 1), (2, 2, 1), (8, 2, 4), (3, 2, 2), (6, 1, 6), (5, None, 1)]
)
def test_channel_policy_round_trips(channels, model_channels, n_groups):
    x = np.random.default_rng(1).standard_normal((channels, 50)).astype(np.float32)
    groups = channel_groups(channels, model_channels)
    assert len(groups) == n_groups
    grouped = split_channels(x, groups)  # [G, M, T]
    back = merge_channels(grouped[:, None], groups, channels)[0]  # identity model with one source
    np.testing.assert_allclose(back, x, atol=1e-6)
