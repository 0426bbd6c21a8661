"""The separation engine: chunk planning, seams, shifts, channel policy, stems, API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import demixer
from demixer.errors import AudioError, OptionsError
from demixer.models.base import SeparationModel
from demixer.models.tiny import TinyMaskConfig, TinyMaskModel
from demixer.separation import OverlapAdd, Separator, StemPlan, chunk_weight, plan_chunks

from .conftest import tone


class ConvModel(SeparationModel):
    """A waveform model with a known receptive field (kernel // 2 samples each side)."""

    sources = ("a", "b")
    sample_rate = 8000
    audio_channels = 2
    default_segment = 1.0

    def __init__(self, kernel: int = 101) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv1d(2, 4, kernel, padding=kernel // 2)

    def forward(self, mix):
        y = torch.tanh(self.conv(mix))
        return y.reshape(mix.shape[0], 2, 2, -1)


class ElasticConvModel(ConvModel):
    """The same model, telling the engine it takes chunks of any length."""

    elastic_segment = True


def test_plan_covers_track_with_quantised_starts():
    chunks, ovl = plan_chunks(total=100_003, segment=10_000, overlap=0.25, quantum=256)
    assert all(c.start % 256 == 0 for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == 100_003
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:]))  # neighbours overlap
    ola = OverlapAdd(100_003, 1, 1)
    for c in chunks:
        ola.add(c.start, np.ones((1, 1, c.length), np.float32), chunk_weight(c, ovl))
    np.testing.assert_allclose(ola.flush(100_003), 1.0, rtol=1e-6)  # weights normalise to exactly one


@pytest.mark.parametrize("total", [80_001, 136_000, 240_000, 960_000, 1_000_003])
def test_elastic_plan_tiles_with_fewer_chunks(total):
    fixed, ovl = plan_chunks(total=total, segment=80_000, overlap=0.15, quantum=8)
    chunks, ovl2 = plan_chunks(total=total, segment=80_000, overlap=0.15, quantum=8, elastic=True)
    assert ovl2 == ovl
    assert all(c.start % 8 == 0 for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == total
    assert all(a.end - b.start >= ovl for a, b in zip(chunks, chunks[1:]))  # at least the asked overlap
    assert all(0.5 * 80_000 <= c.length <= 1.3 * 80_000 for c in chunks)  # never much longer than asked
    assert len(chunks) <= len(fixed) and sum(c.length for c in chunks) <= sum(c.length for c in fixed)
    ola = OverlapAdd(total, 1, 1)
    for c in chunks:
        ola.add(c.start, np.ones((1, 1, c.length), np.float32), chunk_weight(c, ovl))
    np.testing.assert_allclose(ola.flush(total), 1.0, rtol=1e-6)


def test_elastic_plan_saves_the_needless_chunk():
    # 30 s at 8 kHz in 10 s chunks with 1.5 s shared: a fixed grid needs 4 chunks (40 s of work), elastic 3
    fixed, _ = plan_chunks(total=240_000, segment=80_000, overlap=0.15, quantum=8)
    elastic, _ = plan_chunks(total=240_000, segment=80_000, overlap=0.15, quantum=8, elastic=True)
    assert (len(fixed), len(elastic)) == (4, 3)


def test_short_track_is_one_chunk():
    chunks, _ = plan_chunks(total=5, segment=44100, overlap=0.25, quantum=512)
    assert [(c.start, c.length) for c in chunks] == [(0, 5)]


@pytest.mark.parametrize(
    "model_factory, segment, seconds",
    [
        (lambda: ConvModel(101), 0.5, 7.3),
        (lambda: ElasticConvModel(101), 0.5, 7.3),
        (lambda: TinyMaskModel(TinyMaskConfig(sample_rate=8000, n_fft=256, hop_length=64)), 0.7, 9.1),
    ],
)
@pytest.mark.parametrize("overlap, batch", [(0.25, 1), (0.5, 3)])
def test_chunked_equals_unchunked_seams_included(model_factory, segment, seconds, overlap, batch):
    model = model_factory().eval()
    x = tone(seconds, 8000, 2) + 0.3 * np.random.default_rng(2).standard_normal((2, int(seconds * 8000))).astype(
        np.float32
    )
    whole = Separator(model=model, segment=seconds + 1).separate_tensor(x, 8000)
    chunked = Separator(model=model, segment=segment, overlap=overlap, batch_size=batch).separate_tensor(x, 8000)
    for s in model.sources:
        ref, est = whole[s].numpy(), chunked[s].numpy()
        rel = np.linalg.norm(est - ref) / np.linalg.norm(ref)
        assert rel < 1e-4, f"{s}: relative error {rel:.2e}"
        # seams: the worst sample error is small too, not just the average
        assert np.abs(est - ref).max() < 1e-4 * np.abs(ref).max() * 10


def test_chunks_without_overlap_do_show_seams():
    """Guards the seam test: the same comparison does fail when chunks do not overlap."""
    model = ConvModel(101).eval()
    x = tone(3.0, 8000, 2)
    whole = Separator(model=model, segment=4).separate_tensor(x, 8000)["a"].numpy()
    cut = Separator(model=model, segment=0.5, overlap=0.0).separate_tensor(x, 8000)["a"].numpy()
    assert np.linalg.norm(cut - whole) / np.linalg.norm(whole) > 1e-3


def test_shifts_average_shifted_passes():
    model = ConvModel(11).eval()
    x = tone(4.0, 8000, 2)
    plain = Separator(model=model, segment=1).separate_tensor(x, 8000)["a"].numpy()
    shifted = Separator(model=model, segment=1, shifts=2).separate_tensor(x, 8000)["a"].numpy()
    # a shift-equivariant model with a short receptive field gives the same result away from the edges
    inner = slice(8000, -8000)
    assert np.abs(shifted[:, inner] - plain[:, inner]).max() < 1e-4
    chunks, _ = plan_chunks(total=32000, segment=8000, overlap=0.25, shifts=2, max_shift=4000, seed=0)
    assert any(c.start < 0 for c in chunks)  # the shifted passes exist


@pytest.mark.parametrize("channels", [1, 2, 3, 8])
def test_output_keeps_channel_count_and_rate(channels):
    sep = Separator(model=ConvModel(5).eval(), segment=0.5)
    out = sep.separate_tensor(tone(1.0, 22050, channels), 22050)
    assert all(v.shape == (channels, 22050) for v in out.values())


def test_mono_1d_input_gives_1d_stems():
    out = demixer.separate(tone(1.0, 44100, 1)[0], 44100, name="hpss")
    assert set(out) == {"drums", "other"} and out["drums"].shape == (44100,)


def test_two_stems_and_stem_subset():
    x = tone(1.0, 44100, 2)
    two = Separator("hpss", two_stems="drums").separate_tensor(x, 44100)
    full = Separator("hpss").separate_tensor(x, 44100)
    assert list(two) == ["drums", "no_drums"]
    torch.testing.assert_close(two["no_drums"], full["other"])
    assert list(Separator("hpss", stems=["other"]).separate_tensor(x, 44100)) == ["other"]
    with pytest.raises(OptionsError, match="no stem 'vocals'"):
        Separator("hpss", two_stems="vocals")


def test_stem_plan_atten_lim_keeps_the_sum():
    block = np.random.default_rng(0).standard_normal((2, 1, 100)).astype(np.float32)
    out = StemPlan(("speech", "noise"), atten_lim=6.0)(block)
    np.testing.assert_allclose(out["speech"] + out["noise"], block.sum(0), atol=1e-6)
    np.testing.assert_allclose(out["noise"], (1 - 10 ** (-6 / 20)) * block[1], atol=1e-6)


def test_stem_plan_takes_the_model_default_atten_lim_unless_told():
    from demixer.models import load_model

    model = load_model("spectral-gate")
    assert model.default_atten_lim is None and StemPlan.for_model(model).atten_gain is None
    model.default_atten_lim = 6.0  # what a shipped denoiser's card sets
    assert StemPlan.for_model(model).atten_gain == pytest.approx(10 ** (-6 / 20))
    assert StemPlan.for_model(model, atten_lim=12.0).atten_gain == pytest.approx(10 ** (-12 / 20))
    assert StemPlan.for_model(model, atten_lim=float("inf")).atten_gain is None  # inf: no limit
    assert StemPlan.for_model(load_model("hpss"), atten_lim=6.0).atten_gain is None  # no noise stem


def test_api_rejects_bad_input_and_options():
    with pytest.raises(AudioError, match="NaN"):
        Separator("hpss").separate_tensor(np.full((2, 100), np.nan, np.float32), 44100)
    with pytest.raises(OptionsError, match="--overlap"):
        Separator("hpss", overlap=1.5)
    with pytest.raises(OptionsError, match="unknown option"):
        Separator("hpss", segmnt=3)


def test_progress_callback_reaches_the_end():
    seen = []
    Separator(model=ConvModel(5).eval(), segment=0.25, callback=seen.append).separate_tensor(tone(2.0, 8000, 2), 8000)
    fractions = [e["progress"] for e in seen if e["stage"] == "separate"]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(0.95)


def test_silence_gives_silence_not_nan():
    out = Separator("hpss").separate_tensor(np.zeros((2, 44100), np.float32), 44100)
    assert all(torch.isfinite(v).all() and v.abs().max() == 0 for v in out.values())


def test_band_extension_gives_a_low_rate_model_the_input_band(tmp_path):
    """An 8 kHz model on 16 kHz input: the stems get the band above 4 kHz back (shared by their energy
    just below it), so they sum to the input there; files and arrays agree; block sizes do not matter."""
    from scipy.signal import butter, sosfiltfilt

    from demixer.audio import OutputFormat, load_audio, save_audio
    from demixer.models.convtasnet import ConvTasNet, ConvTasNetConfig
    from demixer.separation.pipeline import separate_file

    torch.manual_seed(0)
    model = ConvTasNet(ConvTasNetConfig(filters=32, bottleneck=16, hidden=32, blocks=2, repeats=1)).eval()
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((1, 32000))).astype(np.float32)
    sep = Separator(model=model)
    stems = {k: v.numpy() for k, v in sep.separate_tensor(x, 16000).items()}
    high = butter(8, 4400, "highpass", fs=16000, output="sos")
    err = sosfiltfilt(high, x - sum(stems.values()))
    assert np.sqrt(np.mean(err**2)) < 0.02 * np.sqrt(np.mean(sosfiltfilt(high, x) ** 2)), (
        "the high band is all given out"
    )
    for s in stems.values():
        assert np.sqrt(np.mean(sosfiltfilt(high, s) ** 2)) > 1e-3, "each stem has content above 4 kHz"
    src = save_audio(tmp_path / "meeting.wav", x, 16000, OutputFormat(container="wav", encoding="float32"))
    runs = []
    for block in (1 << 18, 3001):
        outputs = {s: tmp_path / f"b{block}" / f"{s}.wav" for s in sep.plan.outputs}
        separate_file(
            sep.model,
            src,
            outputs,
            sep.plan,
            sep.settings,
            OutputFormat(container="wav", encoding="float32"),
            block_frames=block,
        )
        runs.append({s: load_audio(p)[0] for s, p in outputs.items()})
    for s in stems:
        assert np.abs(runs[0][s] - stems[s]).max() < 1e-4
        assert np.abs(runs[0][s] - runs[1][s]).max() < 1e-5
    two = Separator(model=model, two_stems="speaker1").separate_tensor(x, 16000)
    assert torch.allclose(two["speaker1"], torch.from_numpy(stems["speaker1"]), atol=1e-5)
    assert torch.allclose(two["no_speaker1"], torch.from_numpy(stems["speaker2"]), atol=1e-5)


def test_options_name_what_is_above_their_limits():
    from demixer.options import LIMITS, SeparationOptions

    assert SeparationOptions().over_limits() == []
    over = SeparationOptions(shifts=1000, segment=1e9, start=1e9).over_limits()
    assert over == [
        "--shifts: 1000 is above the limit of 20",
        "--segment: 1e+09 is above the limit of 900",
        "--start: 1e+09 is above the limit of 86400",
    ]
    assert SeparationOptions(**{k: v for k, v in LIMITS.items() if k != "jobs"}, jobs=2).over_limits() == []
