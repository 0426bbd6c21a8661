"""The quality signals and images of a finished separation, read from its files block by block.

Memory stays flat in the track's length (a block, the quality signals' 60 s excerpts, an image's worth
of envelope and spectrogram frames); the results equal :func:`~demixer.evaluation.quality.quality_signals`
and :func:`~demixer.evaluation.plots.save_audio_images` on the whole arrays.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.io import AudioInfo, iter_blocks, probe
from ..errors import AudioError
from .plots import ImageSketch
from .quality import QualityAccumulator


def _exact_blocks(blocks: Iterator[np.ndarray], size: int, total: int) -> Iterator[np.ndarray]:
    """Re-cut decoded blocks into blocks of exactly ``size`` frames (the last shorter), ``total`` frames in all."""
    pending: list[np.ndarray] = []
    held = given = 0
    for block in blocks:
        pending.append(block)
        held += block.shape[-1]
        while held >= size and given + size <= total:
            joined = np.concatenate(pending, axis=-1)
            yield joined[:, :size]
            given += size
            pending, held = [joined[:, size:]], joined.shape[-1] - size
        if given >= total:
            return
        if held >= total - given:  # the last, shorter block is complete: the rest is never decoded
            yield np.concatenate(pending, axis=-1)[:, : total - given]
            return
    rest = min(total - given, held)
    if rest > 0:
        yield np.concatenate(pending, axis=-1)[:, :rest]


def analyse_separation(
    mixture: str | os.PathLike[str],
    stems: dict[str, Path],
    *,
    start: float = 0.0,
    duration: float | None = None,
    quality: bool = True,
    images: Path | None = None,
) -> dict[str, Any] | None:
    """Quality signals of the stems written from ``mixture`` (its ``start``/``duration`` span), and with
    ``images`` a waveform and a spectrogram PNG per stem and for ``mixture`` in that folder
    (``NAME.waveform.png``, ``NAME.spectrogram.png``; one colour scale, the mixture's top).

    Returns:
        the quality signals (:func:`~demixer.evaluation.quality.quality_signals`), or None without ``quality``.

    Raises:
        AudioError: a stem at another sample rate than the mixture, or an unreadable file.
    """
    mix_info = probe(mixture)
    infos: dict[str, AudioInfo] = {name: probe(path) for name, path in stems.items()}
    rate = mix_info.sample_rate
    for name, info in infos.items():
        if info.sample_rate != rate:
            raise AudioError(stems[name], f"stem at {info.sample_rate} Hz, the mixture at {rate} Hz")
    first = int(round(start * rate))
    span = mix_info.frames - first if duration is None else min(int(round(duration * rate)), mix_info.frames - first)
    length = max(0, min([span, *(info.frames for info in infos.values())]))
    names = list(stems)
    acc = QualityAccumulator(names, length, mix_info.channels, rate) if quality else None
    sketches = {k: ImageSketch(length, rate) for k in ["mixture", *names]} if images is not None else {}
    size = acc.block if acc is not None else max(1, int(10.0 * rate))
    readers = [_exact_blocks(iter_blocks(mix_info, start=start, duration=duration), size, length)]
    readers += [_exact_blocks(iter_blocks(infos[k]), size, length) for k in names]
    for blocks in zip(*readers):
        mix, parts = blocks[0], dict(zip(names, blocks[1:]))
        if acc is not None:
            acc.add(mix, parts)
        for k, block in (("mixture", mix), *parts.items()):
            if k in sketches:
                sketches[k].add(block.mean(axis=0))
    if images is not None:
        top = float(sketches["mixture"].spectrogram_db().max())
        for k, sketch in sketches.items():
            sketch.save(images / f"{k}.waveform.png", images / f"{k}.spectrogram.png", top_db=top)
    return acc.result() if acc is not None else None
