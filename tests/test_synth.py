"""`demixer data synth`: real renderers (fluidsynth, espeak-ng, flite, festival), MUSDB layout, determinism."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from demixer.audio import load_audio
from demixer.data import NoiseMixDataset, SpeakerMixDataset, StemDataset
from demixer.data.synth.dsp import coloured_noise, estimate_f0
from demixer.data.synth.midi import Note
from demixer.data.synth.music import _tts_vocals
from demixer.data.synth.tools import find_soundfont
from demixer.errors import DemixerError

from .conftest import run_cli, shared


def _md5(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.wav"))}


@pytest.mark.slow
def test_music_synth_cli_layout_and_determinism(tmp_path):
    singing = shared("sources/singing")
    for name in ("a", "b"):
        r = run_cli(
            "data",
            "synth",
            "music",
            "--out",
            tmp_path / name,
            "--minutes",
            "0.3",
            "--seed",
            "5",
            "--vocals",
            singing,
            "--no-progress",
        )
        assert r.returncode == 0, r.stderr
    songs = sorted((tmp_path / "a").iterdir())
    assert songs and all(
        sorted(p.name for p in s.glob("*.wav")) == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"] for s in songs
    )
    assert [_md5(s) for s in songs] == [_md5(tmp_path / "b" / s.name) for s in songs], "same seed, same files"
    for song in songs:
        info = json.loads((song / "info.json").read_text())
        assert info["vocals"] in ("tts", "real singing") and info["bpm"] > 0
        for stem in ("vocals", "drums", "bass", "other"):
            audio, sr = load_audio(song / f"{stem}.wav")
            assert sr == 44100 and audio.shape[0] == 2
            assert 10 * np.log10(np.mean(audio**2) + 1e-12) > -45, f"{song.name}/{stem} is silent"
    ds = StemDataset(tmp_path / "a", ["vocals", "drums", "bass", "other"], segment=2.0, items=2)
    mix, src = ds[0]
    assert torch.equal(mix, src.sum(0))


def test_tts_vocals_follow_the_melody():
    rng = np.random.default_rng(1)
    for pitch in (57, 64, 69):  # A3, E4, A4
        voice = _tts_vocals([Note(0.0, 4.0, pitch)], 60.0, 16000 * 5, 16000, rng)
        f0 = estimate_f0(voice[voice != 0], 16000)
        target = 440 * 2 ** ((pitch - 69) / 12)
        assert f0 is not None
        semitones = 12 * np.log2(f0 / target) % 12  # male voices are sung an octave lower
        assert min(semitones, 12 - semitones) < 1.0, (pitch, f0, target)


@pytest.mark.slow
def test_speech_synth_voices_and_layouts(tmp_path):
    r = run_cli(
        "data",
        "synth",
        "speech",
        "--out",
        tmp_path,
        "--minutes",
        "0.5",
        "--seed",
        "1",
        "--speech",
        shared("speech/librispeech"),
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    voices = sorted(p.name for p in (tmp_path / "utterances").iterdir())
    engines = {v.split("_")[0] for v in voices}
    assert {"espeak", "flite", "festival", "real"} <= engines, voices
    utts = SpeakerMixDataset([tmp_path / "utterances"], speakers=2, sample_rate=16000, segment=2.0, items=2)
    assert len(utts.speakers) == len(voices)
    tracks = StemDataset(
        tmp_path / "tracks", ["speaker1", "speaker2"], sample_rate=16000, channels=1, segment=1.0, items=2
    )
    mix, src = tracks[0]
    assert src.shape == (2, 1, 16000) and torch.equal(mix, src.sum(0))


@pytest.mark.slow
def test_noise_synth_and_colours(tmp_path):
    r = run_cli(
        "data",
        "synth",
        "noise",
        "--out",
        tmp_path / "noise",
        "--minutes",
        "2",
        "--seed",
        "2",
        "--noise",
        shared("noise"),
        "--speech",
        shared("speech/cmu_arctic"),
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    kinds = [json.loads(p.read_text())["kind"] for p in sorted((tmp_path / "noise").glob("*/info.json"))]
    assert len(kinds) == 12 and all(k.startswith(("colour:", "real:", "babble")) for k in kinds)
    assert {k.split(":")[0].split("+")[0] for k in kinds} == {"colour", "real", "babble"}, kinds
    ds = NoiseMixDataset([shared("speech/cmu_arctic")], [tmp_path / "noise"], segment=1.0, items=2)
    assert ds[0][1].shape == (2, 1, 16000)
    rng = np.random.default_rng(0)
    for colour, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        x = coloured_noise(1 << 16, colour, rng)
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.arange(len(p))
        band = (f > 10) & (f < len(p) - 10)
        fit = np.polyfit(np.log(f[band]), np.log(p[band]), 1)[0]
        assert abs(fit - slope) < 0.1, (colour, fit)


@pytest.mark.slow
def test_missing_tools_are_explained():
    with pytest.raises(DemixerError, match="apt-get install"):
        find_soundfont("/nonexistent.sf2")
    r = run_cli("data", "synth", "music", "--out", "/tmp/x", "--minutes", "0")
    assert r.returncode == 2 and "--minutes" in r.stderr
