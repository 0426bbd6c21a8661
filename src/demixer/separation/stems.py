"""Which stems come out, derived from the model's sources and the options.

- ``--two-stems X``: ``X`` and ``no_X`` (the sum of every other source);
- ``--stems a b``: only those;
- ``--atten-lim DB`` on a denoiser (a model with a ``noise`` stem): at most ``DB`` of noise is
  removed, by mixing ``10^(-DB/20)`` of the noise back into every other stem (as
  DeepFilterNet's ``atten_lim_db``); the stems still sum to the mixture. Without ``--atten-lim`` the
  model's own default applies (``demixer-denoise``'s card sets one); ``--atten-lim inf`` lifts any limit.
"""

from __future__ import annotations

import numpy as np

from ..errors import OptionsError
from ..models.base import atten_gain


class StemPlan:
    """Maps model output blocks to the output stems.

    Shape:
        ``__call__``: ``[S, C, n]`` (model sources) -> ``{stem: [C, n]}``.
    """

    def __init__(
        self,
        sources: tuple[str, ...] | list[str],
        two_stems: str | None = None,
        stems: list[str] | None = None,
        atten_lim: float | None = None,
    ) -> None:
        self.model_sources = tuple(sources)
        self.outputs: tuple[str, ...]
        if two_stems is not None:
            if two_stems not in self.model_sources:
                raise OptionsError(
                    f"--two-stems: the model has no stem {two_stems!r} (it has {', '.join(self.model_sources)})"
                )
            self.outputs = (two_stems, f"no_{two_stems}") if f"no_{two_stems}" != two_stems else (two_stems,)
        elif stems:
            unknown = [s for s in stems if s not in self.model_sources]
            if unknown:
                raise OptionsError(
                    f"--stems: the model has no stem {', '.join(map(repr, unknown))} "
                    f"(it has {', '.join(self.model_sources)})"
                )
            self.outputs = tuple(dict.fromkeys(stems))
        else:
            self.outputs = self.model_sources
        self.two_stems = two_stems
        self.atten_gain = atten_gain(atten_lim) if "noise" in self.model_sources else None

    @classmethod
    def for_model(
        cls, model, two_stems: str | None = None, stems: list[str] | None = None, atten_lim: float | None = None
    ) -> StemPlan:
        """The plan for ``model``'s sources; ``atten_lim=None`` takes the model's ``default_atten_lim``."""
        plan = cls(model.sources, two_stems, stems)
        plan.atten_gain = model.kept_noise(atten_lim)
        return plan

    def __call__(self, block: np.ndarray) -> dict[str, np.ndarray]:
        src = dict(zip(self.model_sources, block))
        if self.atten_gain is not None:
            noise = src["noise"]
            others = [s for s in self.model_sources if s != "noise"]
            for s in others:
                src[s] = src[s] + self.atten_gain * noise / len(others)
            src["noise"] = (1.0 - self.atten_gain) * noise
        if self.two_stems is not None:
            target = src[self.two_stems]
            rest = [v for k, v in src.items() if k != self.two_stems]
            out = {self.two_stems: target}
            if len(self.outputs) == 2:
                out[self.outputs[1]] = np.sum(rest, axis=0) if rest else np.zeros_like(target)
            return out
        return {s: src[s] for s in self.outputs}
