"""Chunked inference with weighted overlap-add, streamed in one pass over the track.

How a track of ``T`` samples is cut:

- chunks of ``L`` samples (the segment) advance by ``L - O`` (``O``: the overlap), and
  every start is a multiple of the model's ``time_quantum`` (its STFT hop), so a chunk sees
  the same frames the whole track would;
- the last chunk is moved back so that it ends exactly at the track's end (it never
  reads padding the whole-track pass would not see);
- a model that takes any length (``elastic_segment``) gets equal chunks stretched or shrunk
  to tile the track with the overlap and no more chunks than it needs;
- each chunk's output is weighted by a window that is **zero** in the outer quarter of the
  overlap on every side shared with a neighbour, rises as sin² across the middle half and
  is one elsewhere. The result is ``sum(w_k y_k) / sum(w_k)``. A sample is therefore only
  taken from chunks in which it lies at least ``O / 4`` from the cut, so for a model whose
  receptive field is shorter than ``O / 4`` chunked output equals unchunked output;
- ``shifts`` adds passes whose chunk grid is moved by a random offset (up to
  ``max_shift``), averaged in the same sum (the "shift trick" of Demucs).

Chunks of all passes are processed in order of their start; everything before the next
chunk's start is final and is handed on (``emit``) at once, so memory holds only about
one segment per stem whatever the track's length.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..audio.channels import channel_groups, merge_channels, split_channels
from ..models.base import SeparationModel
from ..models.blend import Blend
from .memory import release_free_memory


@dataclass(frozen=True)
class Chunk:
    """One model call's span of the track. ``start`` may be negative in shifted passes."""

    start: int
    length: int
    left_edge: bool  # no neighbour on the left: no fade-in
    right_edge: bool  # no neighbour on the right: no fade-out

    @property
    def end(self) -> int:
        return self.start + self.length


def _grid(total: int, segment: int, stride: int, quantum: int, elastic: bool = False) -> list[tuple[int, int]]:
    """(start, length) of one pass over ``[0, total)``."""
    if total <= segment:
        return [(0, total)]
    starts = []
    s = 0
    while s + segment < total:
        starts.append(s)
        s += stride
    last = max(0, (total - segment) // quantum * quantum)
    if starts and last <= starts[-1]:
        starts.pop()
    spans = [(s, segment) for s in starts]
    spans.append((last, total - last))
    if elastic:  # never more work than the fixed grid (which lets a last chunk run a few samples long)
        stretched = _elastic_grid(total, segment, segment - stride, quantum)
        if sum(n for _, n in stretched) < sum(n for _, n in spans):
            return stretched
    return spans


def _elastic_grid(total: int, segment: int, overlap: int, quantum: int) -> list[tuple[int, int]]:
    """Equal chunks near ``segment`` long that tile ``[0, total)`` with at least ``overlap`` shared.

    The count is the nearest whole number of strides, so a track is never cut into one chunk
    more than it needs (a fixed grid runs 4 chunks of 10 s over 30 s; this runs 3 of 11 s).
    """
    stride = segment - overlap
    n = max(2, round((total - overlap) / stride))
    # n chunks of L cover the track with the overlap when n L - (n - 1) overlap >= total; one
    # quantum more absorbs the starts' rounding down to the quantum
    length = -(-(total + (n - 1) * overlap) // n)
    length = -(-length // quantum) * quantum + quantum
    if length >= total:
        return [(0, total)]
    span = total - length
    starts = [k * span // (n - 1) // quantum * quantum for k in range(n)]
    return [(s, length) for s in starts[:-1]] + [(starts[-1], total - starts[-1])]


def plan_chunks(
    total: int,
    segment: int,
    overlap: float,
    quantum: int = 1,
    shifts: int = 0,
    max_shift: int = 0,
    seed: int = 0,
    elastic: bool = False,
) -> tuple[list[Chunk], int]:
    """Cut ``total`` samples into chunks.

    Args:
        total: track length in samples.
        segment: chunk length in samples (rounded down to a multiple of ``quantum``).
        overlap: fraction of the segment shared by neighbours.
        quantum: chunk starts are multiples of it.
        shifts: number of randomly shifted passes (0: one unshifted pass).
        max_shift: largest shift in samples.
        seed: seeds the shifts, for reproducible output.
        elastic: the model takes any length: equal chunks, stretched (by a quarter at most) or
            shrunk, tile the track with no more chunks than it needs.

    Returns:
        The chunks sorted by start, and the overlap ``O`` in samples.
    """
    if total < 1:
        raise ValueError("cannot plan chunks for an empty signal")
    quantum = max(1, int(quantum))
    segment = max(quantum, int(segment) // quantum * quantum)
    ovl = int(segment * overlap)
    stride = max(quantum, (segment - ovl) // quantum * quantum)
    ovl = segment - stride
    offsets = [0]
    if shifts > 0:
        rng = random.Random(seed)
        offsets = [rng.randrange(0, max(max_shift, 0) // quantum + 1) * quantum for _ in range(shifts)]
    chunks = []
    for offset in offsets:
        for s, n in _grid(total + offset, segment, stride, quantum, elastic):
            start = s - offset
            chunks.append(Chunk(start, n, left_edge=s == 0, right_edge=start + n >= total))
    chunks.sort(key=lambda c: (c.start, c.length))
    return chunks, ovl


def chunk_weight(chunk: Chunk, overlap: int) -> np.ndarray:
    """Overlap-add weight of one chunk (see the module docstring). Shape: ``[length]``."""
    w = np.ones(chunk.length, dtype=np.float32)
    margin = overlap // 4
    ramp = overlap - 2 * margin
    if overlap <= 0:
        return w
    fade = (
        (np.sin(0.5 * np.pi * (np.arange(ramp) + 0.5) / ramp) ** 2).astype(np.float32)
        if ramp > 0
        else np.zeros(0, np.float32)
    )
    if not chunk.left_edge:
        head = np.concatenate([np.zeros(margin, np.float32), fade])[: chunk.length]
        w[: head.size] *= head
    if not chunk.right_edge:
        tail = np.concatenate([fade[::-1], np.zeros(margin, np.float32)])[-chunk.length :]
        w[chunk.length - tail.size :] *= tail
    return w


class OverlapAdd:
    """Accumulates weighted chunk outputs and releases finished samples in order.

    Shape:
        ``add(start, y, w)``: ``y`` ``[S, C, n]``, ``w`` ``[n]``; ``flush`` returns ``[S, C, m]``.
    """

    def __init__(self, total: int, sources: int, channels: int) -> None:
        self.total, self.sources, self.channels = total, sources, channels
        self.base = 0  # first sample not yet released
        self.acc = np.zeros((sources, channels, 0), np.float32)
        self.wsum = np.zeros(0, np.float32)

    def _reserve(self, end: int) -> None:
        need = end - self.base - self.wsum.size
        if need > 0:
            grown = np.zeros((self.sources, self.channels, self.wsum.size + need), np.float32)
            grown[..., : self.wsum.size] = self.acc
            self.acc = grown
            self.wsum = np.concatenate([self.wsum, np.zeros(need, np.float32)])

    def add(self, start: int, y: np.ndarray, w: np.ndarray) -> None:
        """Add ``y * w`` (``y`` is scaled in place: the caller hands it over)."""
        lo, hi = max(start, self.base), min(start + y.shape[-1], self.total)
        if hi <= lo:
            return
        self._reserve(hi)
        a, b = lo - start, hi - start
        part = y[..., a:b]
        if not (w[a:b] == 1.0).all():
            part *= w[a:b]
        self.acc[..., lo - self.base : hi - self.base] += part
        self.wsum[lo - self.base : hi - self.base] += w[a:b]

    def flush(self, upto: int) -> np.ndarray:
        """The finished samples ``[base, upto)``: a view of the buffer, valid until the next ``add``."""
        upto = min(upto, self.total)
        n = upto - self.base
        if n <= 0:
            return np.zeros((self.sources, self.channels, 0), np.float32)
        self._reserve(upto)
        weights = self.wsum[:n]
        if not (weights > 0).all():
            raise RuntimeError(f"overlap-add left samples {self.base}..{upto} without weight (planning bug)")
        out = self.acc[..., :n]
        if not (weights == 1.0).all():
            out /= weights
        self.acc = self.acc[..., n:]
        self.wsum = self.wsum[n:]
        self.base = upto
        return out


Reader = Callable[[int, int], np.ndarray]  # (start, length) -> [C, length], zeros outside the track


def padded_read(
    start: int, length: int, total: int, channels: int, fetch: Callable[[int, int], np.ndarray]
) -> np.ndarray:
    """Samples ``[start, start + length)`` of a track, zeros outside ``[0, total)``; ``fetch(lo, hi)`` reads inside."""
    out = np.zeros((channels, length), np.float32)
    lo, hi = max(start, 0), min(start + length, total)
    if hi > lo:
        out[:, lo - start : hi - start] = fetch(lo, hi)
    return out


def run_chunked(
    model: SeparationModel,
    read: Reader,
    total: int,
    channels: int,
    emit: Callable[[np.ndarray], None],
    *,
    segment: float | None = None,
    overlap: float | None = None,
    shifts: int = 0,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    max_shift: float = 0.5,
    seed: int = 0,
    on_progress: Callable[[float], None] | None = None,
) -> None:
    """Separate a track of ``total`` samples at the model's rate, chunk by chunk.

    Args:
        model: any :class:`SeparationModel`.
        read: returns the mixture's samples ``[start, start + length)``, zero-padded.
        total: track length in samples (model rate).
        channels: the track's channel count (any; see :mod:`demixer.audio.channels`).
        emit: receives finished output blocks in order (views of the engine's buffer: copy what is kept).
            Shape: ``[S, C, n]``.
        segment: seconds per chunk (``None``: the model's ``default_segment``).
        overlap: fraction of a segment shared by neighbours (``None``: the model's ``default_overlap``).
        shifts: randomly shifted passes to average (0: none).
        batch_size: chunks per forward pass.
        device: where the model runs; the track stays on the CPU.
        max_shift: largest shift in seconds.
        seed: seeds the shifts.
        on_progress: called with the fraction done, in [0, 1].
    """
    sr = model.sample_rate
    seg = int(round((segment or model.default_segment) * sr))
    overlap = model.default_overlap if overlap is None else overlap
    chunks, ovl = plan_chunks(
        total, seg, overlap, model.time_quantum, shifts, int(max_shift * sr), seed, elastic=model.elastic_segment
    )
    out_channels = channels
    if model.unordered_sources and model.audio_channels is not None and channels != model.audio_channels:
        # speakers: one downmix, so every channel's stems follow the same talker; each stem in every channel
        read, channels = _downmixed(read, model.audio_channels), model.audio_channels
        emit = _spread(emit, out_channels)
    groups = channel_groups(channels, model.audio_channels)
    ola = OverlapAdd(total, len(model.sources), channels)
    previous: tuple[int, np.ndarray] | None = None  # the last chunk's start and stems, to order speakers by
    device = torch.device(device)
    work = sum(c.length for c in chunks)
    done = 0
    i = 0
    while i < len(chunks):
        batch = [chunks[i]]
        while (
            len(batch) < batch_size
            and i + len(batch) < len(chunks)
            and chunks[i + len(batch)].length == batch[0].length
        ):
            batch.append(chunks[i + len(batch)])
        i += len(batch)
        mix = np.concatenate([split_channels(read(c.start, c.length), groups) for c in batch])  # [len(batch)*G, M, n]
        out = _forward(model, mix, device)  # [len(batch)*G, S, M, n]
        expected = (mix.shape[0], len(model.sources), mix.shape[1], mix.shape[2])
        if out.shape != expected:
            raise RuntimeError(f"{type(model).__name__} returned shape {out.shape}, expected {expected}")
        for k, c in enumerate(batch):
            y = merge_channels(out[k * len(groups) : (k + 1) * len(groups)], groups, channels)
            if model.unordered_sources:
                if previous is not None:
                    y = y[continuing_order(previous, (c.start, y))]
                previous = (c.start, y.copy())
            ola.add(c.start, y, chunk_weight(c, ovl))
        del out, mix, y
        release_free_memory()  # the chunk's activations: back to the OS, not held in the allocator's heap
        done += sum(c.length for c in batch)
        emit(ola.flush(chunks[i].start if i < len(chunks) else total))
        if on_progress is not None:
            on_progress(done / work)


def continuing_order(previous: tuple[int, np.ndarray], current: tuple[int, np.ndarray]) -> list[int]:
    """The order of ``current``'s stems that best continues ``previous``'s on the samples both cover.

    Each argument is ``(start, stems [S, C, n])``. Stem pairs are scored by their normalised correlation over
    the shared span, and the assignment with the largest total wins (Hungarian method). Without a shared
    span the order is kept.
    """
    (a_start, a), (b_start, b) = previous, current
    lo, hi = max(a_start, b_start), min(a_start + a.shape[-1], b_start + b.shape[-1])
    if hi - lo <= 0:
        return list(range(b.shape[0]))
    from scipy.optimize import linear_sum_assignment

    x = a[..., lo - a_start : hi - a_start].reshape(a.shape[0], -1).astype(np.float64)
    y = b[..., lo - b_start : hi - b_start].reshape(b.shape[0], -1).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    y /= np.linalg.norm(y, axis=1, keepdims=True) + 1e-12
    rows, cols = linear_sum_assignment(x @ y.T, maximize=True)  # rows: previous stems, in order
    return [int(c) for c in cols[np.argsort(rows)]]


def _downmixed(read: Reader, channels: int) -> Reader:
    """A reader giving the mean of all channels, repeated to ``channels``."""

    def read_mean(start: int, length: int) -> np.ndarray:
        mono = read(start, length).mean(axis=0, keepdims=True)
        return np.repeat(mono, channels, axis=0)

    return read_mean


def _spread(emit: Callable[[np.ndarray], None], channels: int) -> Callable[[np.ndarray], None]:
    """An ``emit`` that gives every one of ``channels`` the mean of the block's channels."""
    return lambda block: emit(np.repeat(block.mean(axis=1, keepdims=True), channels, axis=1))


def _forward(model: SeparationModel, mix: np.ndarray, device: torch.device) -> np.ndarray:
    """The model on a batch of chunks. Shape: ``[N, M, n]`` -> ``[N, S, M, n]``.

    A :class:`~demixer.models.blend.Blend` is composed here, by the engine: each member runs through
    :func:`run_chunked` with its own chunking over the chunk, as it would run alone.
    """
    if isinstance(model, Blend):
        return np.stack([_blend_item(model, x) for x in mix])
    with torch.inference_mode():
        return model(torch.from_numpy(mix).to(device)).float().cpu().numpy()


def _blend_item(blend: Blend, mix: np.ndarray) -> np.ndarray:
    """One chunk ``[C, T]`` through every member of a blend -> ``[2, C, T]``."""
    channels, total = mix.shape
    targets = []
    for member in blend.member_models:
        blocks: list[np.ndarray] = []

        def keep(block: np.ndarray, index: int = member.sources.index(blend.target), blocks: list = blocks) -> None:
            blocks.append(block[index].copy())

        run_chunked(
            member,
            lambda start, length: padded_read(start, length, total, channels, lambda lo, hi: mix[:, lo:hi]),
            total,
            channels,
            keep,
            device=next(member.parameters(), torch.empty(0)).device,
        )
        targets.append(torch.from_numpy(np.concatenate(blocks, axis=-1)))
    return blend.combine(targets, torch.from_numpy(mix)).numpy()
