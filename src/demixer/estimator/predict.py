"""The shipped quality estimator on a separation: each stem's predicted SDR, per second and overall, where it is
weak, where its source is probably absent, and a one-line verdict.

The weights and their card ship in ``demixer/estimator/weights/`` (``quality-estimator.safetensors`` and
``.json``; the card's ``sha256`` is checked on load). How they were made: :mod:`demixer.estimator.training`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelNotFoundError
from ..files import sha256_of
from .model import QualityEstimator, class_vector, track_sdr_from_windows

NAME = "quality-estimator"
WEAK_DB = 0.0  # a second predicted under this is flagged
ABSENT_P = 0.5  # a second whose source is more likely silent than not reads as "absent"
ABSENT_SHARE = 0.9  # a stem absent in this share of its seconds is "probably not in this recording"


def weights_dir() -> Path:
    return Path(str(resources.files("demixer") / "estimator" / "weights"))


@cache
def load_card() -> dict[str, Any]:
    path = weights_dir() / f"{NAME}.json"
    if not path.exists():
        raise ModelNotFoundError(f"the quality estimator's card is missing ({path})")
    return json.loads(path.read_text())


@cache
def load_estimator() -> QualityEstimator:
    """The shipped estimator (checked against its card's sha256), in eval mode."""
    from safetensors.torch import load_file

    card = load_card()
    path = weights_dir() / card["file"]
    if sha256_of(path) != card["sha256"]:
        raise ModelNotFoundError(f"{path} does not match its card's sha256: a truncated or replaced file")
    model = QualityEstimator(**card.get("config", {}))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def predict_windows(model: QualityEstimator, features: np.ndarray, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """The network on one stem's window features ``[W, FEATURES]``: ``(SDR in dB [W], silent-source probability
    [W])``, float64."""
    with torch.no_grad():
        sdr, logit = model(torch.from_numpy(features)[None], torch.from_numpy(class_vector(stem))[None])
    return sdr[0].numpy().astype(np.float64), torch.sigmoid(logit[0]).numpy().astype(np.float64)


def _ranges(flags: np.ndarray) -> list[list[int]]:
    """``[[start_s, end_s], ...]`` of the runs of true seconds."""
    out: list[list[int]] = []
    for i, flag in enumerate(flags):
        if flag and out and out[-1][1] == i:
            out[-1][1] = i + 1
        elif flag:
            out.append([i, i + 1])
    return out


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def verdict(stem: str, entry: dict[str, Any]) -> str:
    """One line on a stem: ``vocals: predicted 4.1 dB, weak from 1:12 to 1:30``; ``bass: probably no bass in this
    recording``."""
    if entry.get("probably_absent"):
        return f"{stem}: probably no {stem} in this recording"
    predicted = entry.get("predicted_sdr")
    text = f"{stem}: predicted {predicted:.1f} dB" if predicted is not None else f"{stem}: no estimate"
    weak = entry.get("weak_seconds") or []
    if weak:
        longest = sorted(sorted(weak, key=lambda r: r[0] - r[1])[:3])  # the three longest, in time order
        text += ", weak " + ", ".join(f"from {_clock(a)} to {_clock(b)}" for a, b in longest)
        if len(weak) > 3:
            text += f" and {len(weak) - 3} more stretch(es)"
    absent = entry.get("absent_seconds") or []
    if absent:
        text += f"; source probably absent in {sum(b - a for a, b in absent)} s"
    return text


def estimate(
    features: dict[str, np.ndarray], energy: dict[str, np.ndarray], model: QualityEstimator | None = None
) -> dict[str, dict[str, Any]]:
    """Per stem, from its window features (:class:`demixer.estimator.features.WindowFeaturizer`):
    ``predicted_sdr`` (dB, the whole track; ``None`` when the source is probably absent throughout),
    ``predicted_sdr_per_second``, ``silent_source_probability`` (per second), ``weak_seconds`` and
    ``absent_seconds`` (``[start, end]`` ranges in seconds), ``probably_absent`` and ``verdict``."""
    model = model or load_estimator()
    out: dict[str, dict[str, Any]] = {}
    for stem, feats in features.items():
        if not len(feats):
            continue
        sdr, silent_p = predict_windows(model, feats, stem)
        absent = silent_p > ABSENT_P
        whole = track_sdr_from_windows(sdr, silent_p, energy[stem])
        entry: dict[str, Any] = {
            "predicted_sdr": round(whole, 2) if np.isfinite(whole) else None,
            "predicted_sdr_per_second": [round(float(v), 2) for v in sdr],
            "silent_source_probability": [round(float(v), 3) for v in silent_p],
            "weak_seconds": _ranges((sdr < WEAK_DB) & ~absent),
            "absent_seconds": _ranges(absent),
            "probably_absent": bool(np.mean(absent) >= ABSENT_SHARE),
        }
        entry["verdict"] = verdict(stem, entry)
        out[stem] = entry
    return out
