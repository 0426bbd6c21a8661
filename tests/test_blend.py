"""Blends of separators (demixer.models.blend) and the model cards that ship them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from demixer.errors import ModelNotFoundError
from demixer.models.blend import Blend
from demixer.models.registry import load_model
from demixer.models.shipped import CARD_FORMAT, read_card
from demixer.separation import Separator

from .conftest import tone


def _song(seconds: float = 40.0) -> np.ndarray:
    """A stereo test signal long enough that REPET-SIM (30 s chunks) and HPSS (10 s) chunk differently."""
    rng = np.random.default_rng(0)
    beat = np.zeros((2, int(seconds * 44100)), np.float32)
    beat[:, ::22050] = 1.0  # clicks every half second
    return tone(seconds, freq=330.0, amp=0.2) + 0.3 * beat + 0.01 * rng.standard_normal(beat.shape).astype(np.float32)


@pytest.mark.slow
def test_blend_is_the_weighted_sum_of_its_members_each_chunked_as_alone():
    mix = _song()
    alone = {name: Separator(name).separate_tensor(mix, 44100)["vocals"].numpy() for name in ("repet-sim", "center")}
    blend = Blend([(load_model("repet-sim"), 0.25), (load_model("center"), 0.75)], "vocals")
    assert blend.sources == ("vocals", "no_vocals") and blend.default_segment == 30.0
    out = Separator(model=blend).separate_tensor(mix, 44100)
    expected = 0.25 * alone["repet-sim"] + 0.75 * alone["center"]
    # equal up to context: REPET-SIM's repetition search sees the blend's 30 s chunks, not quite its own
    error = out["vocals"].numpy() - expected
    assert 10 * np.log10((expected**2).sum() / (error**2).sum()) > 30
    np.testing.assert_allclose(out["vocals"].numpy() + out["no_vocals"].numpy(), mix, atol=1e-5)


def test_blend_refuses_members_without_the_target_stem_or_at_another_rate():
    with pytest.raises(ValueError, match="no 'vocals' stem"):
        Blend([(load_model("repet-sim"), 0.5), (load_model("hpss"), 0.5)], "vocals")
    with pytest.raises(ValueError, match="sample rate"):
        Blend([(load_model("spectral-gate"), 0.5), (load_model("deepfilternet3"), 0.5)], "speech")


def test_a_blend_card_loads_its_members_by_name(tmp_path):
    card = {
        "format": CARD_FORMAT,
        "name": "test-blend",
        "tasks": [],
        "description": "x",
        "architecture": "blend",
        "blend": {"target": "vocals", "members": {"repet-sim": 0.5, "center": 0.5}},
        "sources": ["vocals", "no_vocals"],
        "sample_rate": 44100,
        "audio_channels": 2,
        "training": {},
        "data": {},
        "metrics": {},
        "known_weaknesses": ["x"],
    }
    (tmp_path / "test-blend.json").write_text(json.dumps(card))
    model = read_card(tmp_path / "test-blend.json").load(load_model)
    assert isinstance(model, Blend) and model.weights == [0.5, 0.5]
    y = model(torch.from_numpy(_song(2.0))[None])
    assert y.shape == (1, 2, 2, 88200)
    del card["blend"]  # neither a blend nor a weights file: refused, naming what is missing
    (tmp_path / "test-blend.json").write_text(json.dumps(card))
    with pytest.raises(ModelNotFoundError, match="missing file, sha256"):
        read_card(tmp_path / "test-blend.json")
