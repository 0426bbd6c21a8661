"""Models trained by the project and shipped inside the package, each with a model card.

A shipped model is two files in ``demixer/models/weights/``: ``<name>.safetensors`` (a demixer
checkpoint, see :mod:`demixer.models.checkpoint`) and ``<name>.json``, its card: the tasks it
serves, the exact config and command that trained it, the data, steps, wall time and hardware,
the validation and test metrics and the known weaknesses. The card's ``sha256`` is checked on
load, so a truncated or swapped weights file is an error, not a silently wrong model.

``scripts/ship_model.py`` writes both files from a training run.

A card may instead describe a blend of shipped models (:class:`demixer.models.blend.Blend`): it has no
weights file of its own but a ``blend`` entry, ``{"target": "vocals", "members": {"demixer-4stem": 0.25,
"repet-sim": 0.75}}``; each member loads as it loads alone (its own card's sha256 check included).
``scripts/ship_model.py --blend`` writes such a card.

A card's optional ``inference`` entry holds settings chosen on validation data that the model uses when the user
does not give them: ``{"atten_lim": 30}`` (:attr:`SeparationModel.default_atten_lim`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError
from ..files import sha256_of
from .base import SeparationModel
from .blend import Blend
from .checkpoint import load_checkpoint

CARD_FORMAT = "demixer.model-card/1"
REQUIRED = (
    "format",
    "name",
    "tasks",
    "description",
    "architecture",
    "sources",
    "sample_rate",
    "training",
    "data",
    "metrics",
    "known_weaknesses",
)
WEIGHTS = ("file", "sha256", "config")  # required unless the card is a blend
BLEND = ("audio_channels",)  # a blend's channels (a trained model's are in its config)
INFERENCE = {
    "atten_lim": "default_atten_lim",
    "min_enrollment_consistency": "min_enrollment_consistency",
    "min_target_similarity": "min_target_similarity",
}  # a card's ``inference`` keys -> the model attributes they set


def weights_dir() -> Path:
    return Path(str(resources.files("demixer") / "models" / "weights"))


@dataclass(frozen=True)
class ModelCard:
    """A shipped model's card (``<name>.json``)."""

    path: Path
    data: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.data["tasks"])

    @property
    def description(self) -> str:
        return self.data["description"]

    @property
    def weights(self) -> Path:
        return self.path.with_name(self.data["file"])

    @property
    def facts(self) -> dict[str, Any]:
        """What a listing shows without loading the weights: sources, sample rate, channels."""
        channels = self.data["audio_channels"] if "blend" in self.data else self.data["config"].get("audio_channels")
        return {
            "sources": list(self.data["sources"]),
            "sample_rate": int(self.data["sample_rate"]),
            "audio_channels": channels,
        }

    def load(self, load_member: Callable[[str], SeparationModel] | None = None) -> SeparationModel:
        """The model the card describes; a blend's members are loaded by name with ``load_member``
        (the registry's ``load_model``)."""
        if "blend" in self.data:
            if load_member is None:
                raise ModelNotFoundError(
                    f"{self.name} is a blend: load it by name (demixer.load_model) or pass load_member"
                )
            spec = self.data["blend"]
            return Blend([(load_member(name), weight) for name, weight in spec["members"].items()], spec["target"])
        if not self.weights.is_file():
            raise ModelNotFoundError(
                f"{self.name}: its weights {self.weights} are missing from the package (reinstall demixer)"
            )
        if _sha256(self.weights) != self.data["sha256"]:
            raise ModelNotFoundError(
                f"{self.name}: {self.weights} does not match the sha256 of its card {self.path} "
                "(a damaged install: reinstall demixer)"
            )
        model = load_checkpoint(self.weights)
        for key, value in self.data.get("inference", {}).items():
            if key not in INFERENCE:
                raise ModelNotFoundError(
                    f"{self.name}: its card {self.path} has an unknown inference setting {key!r} "
                    f"(known: {', '.join(INFERENCE)}); this demixer is older than the card"
                )
            setattr(model, INFERENCE[key], value)
        return model


@cache
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def _sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def read_card(path: str | Path) -> ModelCard:
    """Read and check one card; a malformed card names its file and the missing field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"model card {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelNotFoundError(f"model card {path}: not a {CARD_FORMAT} card")
    missing = [k for k in REQUIRED + (BLEND if "blend" in data else WEIGHTS) if k not in data]
    if missing or data.get("format") != CARD_FORMAT:
        raise ModelNotFoundError(
            f"model card {path}: not a {CARD_FORMAT} card" + (f" (missing {', '.join(missing)})" if missing else "")
        )
    return ModelCard(path, data)


@cache
def shipped_cards() -> tuple[ModelCard, ...]:
    """The cards of every model shipped in the package, sorted by name (read once per process)."""
    folder = weights_dir()
    if not folder.is_dir():
        return ()
    return tuple(sorted((read_card(p) for p in folder.glob("*.json")), key=lambda c: c.name))


__all__ = ["CARD_FORMAT", "ModelCard", "read_card", "shipped_cards", "weights_dir"]
