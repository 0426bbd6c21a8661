"""A two-stem separator that blends the target stem of several separators: ``target = Σ wᵢ · targetᵢ``,
``no_target = mixture - target``.

Separators that fail in different ways can average into one that fails less: demixer-karaoke blends the
4-stem network's vocals with REPET-SIM's (whatever does not repeat), and the blend scores above both on the
validation song (see its card).
The separation engine runs each member with its own chunking, as it would alone (the network on 10 s
chunks, REPET-SIM on the 30 s of context its repetition search needs), inside the blend's own chunks: the
composition is the engine's (:mod:`demixer.separation.chunking`); this module only describes the blend.
"""

from __future__ import annotations

from math import lcm
from typing import cast

import torch
from torch import Tensor

from .base import SeparationModel


class Blend(SeparationModel):
    """Weighted sum of one stem from several separators, and the rest of the mixture.

    Args:
        members: ``(model, weight)`` pairs; every model has ``target`` among its sources and the same sample rate.
        target: the stem blended (``vocals``).

    Shape:
        ``forward``: ``[B, C, T]`` -> ``[B, 2, C, T]`` (``target``, ``no_<target>``).
    """

    def __init__(self, members: list[tuple[SeparationModel, float]], target: str = "vocals") -> None:
        super().__init__()
        if not members:
            raise ValueError("a blend needs at least one member")
        for model, _ in members:
            if target not in model.sources:
                raise ValueError(f"{type(model).__name__} has no {target!r} stem (it has {', '.join(model.sources)})")
        rates = {model.sample_rate for model, _ in members}
        if len(rates) != 1:
            raise ValueError(f"the members of a blend must share one sample rate, not {sorted(rates)}")
        self.members = torch.nn.ModuleList(model for model, _ in members)
        self.weights = [float(w) for _, w in members]
        self.target = target
        self.sources = (target, f"no_{target}")
        self.sample_rate = rates.pop()
        channels = {model.audio_channels for model, _ in members} - {None}
        self.audio_channels = channels.pop() if len(channels) == 1 else None
        self.time_quantum = lcm(*(model.time_quantum for model, _ in members))
        self.default_segment = max(model.default_segment for model, _ in members)

    def combine(self, targets: list[Tensor], mix: Tensor) -> Tensor:
        """The blend of the members' ``target`` stems (one per member, in order, each ``[..., C, T]``) and the
        rest of the mixture ``[..., C, T]`` -> ``[..., 2, C, T]``."""
        target = cast(Tensor, sum(w * t for w, t in zip(self.weights, targets)))
        return torch.stack([target, mix - target], dim=-3)

    @property
    def member_models(self) -> list[SeparationModel]:
        """The members, in order (their weights: :attr:`weights`)."""
        return [cast(SeparationModel, model) for model in self.members]

    def forward(self, mix: Tensor) -> Tensor:
        """Every member on the whole input, then :meth:`combine`. The separation engine does better: it runs
        each member with its own chunking, as the member would run alone (:mod:`demixer.separation.chunking`)."""
        targets = [model(mix)[:, model.sources.index(self.target)] for model in self.member_models]
        return self.combine(targets, mix)

    def describe(self) -> dict:
        facts = super().describe()
        facts["blend"] = {
            "target": self.target,
            "weights": self.weights,
            "members": [type(model).__name__ for model in self.members],
        }
        return facts


__all__ = ["Blend"]
