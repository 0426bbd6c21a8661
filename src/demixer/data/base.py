"""What every training dataset shares: seeded examples, epochs, and the additive contract."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class MixtureDataset(Dataset):
    """Examples ``(mixture, sources)`` with ``mixture == sources.sum(0)`` exactly.

    Training examples are drawn from a generator seeded by ``(seed, epoch, index)``, so an epoch
    is reproducible (and resumable) whatever the number of loader workers or processes;
    validation examples (``validation=True``) do not depend on the epoch.

    Subclasses set ``sources``, ``sample_rate``, ``channels`` and implement :meth:`make`. A
    :meth:`make` may return ``(sources, *conditions)`` (an enrolment clip, ...): the conditions
    follow the sources in each example and are passed to the model after the mixture.

    Shape:
        ``__getitem__``: ``(mixture [C, T], sources [S, C, T], *conditions)`` float32 tensors.
    """

    sources: tuple[str, ...] = ()
    sample_rate: int = 44100
    channels: int = 1

    def __init__(self, *, items: int, seed: int = 0, validation: bool = False) -> None:
        if items <= 0:
            raise ValueError(f"a dataset needs at least one item per epoch, got {items}")
        self.items = items
        self.seed = seed
        self.validation = validation
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.items

    def rng(self, index: int) -> np.random.Generator:
        epoch = 0 if self.validation else self.epoch
        return np.random.default_rng([self.seed, int(self.validation), epoch, index])

    def make(self, index: int, rng: np.random.Generator) -> np.ndarray | tuple[np.ndarray, ...]:  # pragma: no cover
        """The sources of one example (``[S, C, T]``), optionally followed by conditions."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        if not 0 <= index < self.items:
            raise IndexError(index)
        made = self.make(index, self.rng(index))
        sources, *conditions = made if isinstance(made, tuple) else (made,)
        sources = np.ascontiguousarray(sources, dtype=np.float32)
        if sources.shape[0] != len(self.sources):
            raise RuntimeError(
                f"{type(self).__name__}.make() returned {sources.shape[0]} sources, not {len(self.sources)}"
            )
        stack = torch.from_numpy(sources)
        return (stack.sum(0), stack, *(torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32)) for c in conditions))
