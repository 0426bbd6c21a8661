"""End-to-end separation of one input: arrays in memory, or files streamed through disk.

Files go through three streamed passes, so memory stays flat in the track's length:

1. *prepare*: decode (start/duration applied), check every block (NaN/Inf, truncation) and
   resample to the model's rate into a float32 work file;
2. *separate*: :func:`~demixer.separation.chunking.run_chunked` reads chunks from the work
   file; finished blocks are resampled back to the input's rate and written per stem as
   float32 work files, while the peak level is tracked;
3. *write*: each stem is converted to the output format (with the clip policy) into a
   temporary file beside its target; all are renamed into place only when every stem is
   written. A failure at any point leaves no output behind.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..audio.io import iter_blocks, probe
from ..audio.resample import StreamResampler, resample
from ..audio.writer import AudioWriter, OutputFormat
from ..errors import AudioError
from ..models.base import SeparationModel
from .band_extension import BandExtension, HighBand, high_band
from .chunking import padded_read, run_chunked
from .stems import StemPlan

log = logging.getLogger("demixer")

ProgressFn = Callable[[str, float], None]  # (stage, fraction of the file done)


@dataclass
class EngineSettings:
    """The engine's knobs, taken from :class:`~demixer.options.SeparationOptions`."""

    segment: float | None = None
    overlap: float | None = None  # None: the model's default_overlap
    shifts: int = 0
    batch_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass
class FileResult:
    """What separating one file produced."""

    input: Path
    outputs: dict[str, Path]
    duration: float  # seconds of audio separated
    seconds: float  # wall-clock seconds
    sample_rate: int
    channels: int
    gain: float = 1.0  # level change applied by --clip-mode rescale (1: none)
    clipped_samples: int = 0  # samples clamped by --clip-mode clamp
    quality: dict | None = None  # reference-free quality signals, with --report
    quality_path: Path | None = None
    provenance_paths: dict[str, Path] | None = None  # with --provenance: the record and its HTML rendering

    @property
    def rtf(self) -> float:
        return self.seconds / self.duration if self.duration else float("nan")


def clip_gain(peak: float, mode: str) -> float:
    """Common gain that keeps every stem within full scale under ``rescale``; 1 otherwise."""
    if mode == "rescale" and peak > 1.0:
        return 0.999 / peak
    return 1.0


def _missing_dirs(folders: set[Path]) -> set[Path]:
    """The folders (and their ancestors) that do not exist yet."""
    missing = set()
    for d in folders:
        while not d.exists():
            missing.add(d)
            d = d.parent
    return missing


def _run(model: SeparationModel, read, total: int, channels: int, emit, settings: EngineSettings, progress) -> None:
    run_chunked(
        model,
        read,
        total,
        channels,
        emit,
        segment=settings.segment,
        overlap=settings.overlap,
        shifts=settings.shifts,
        batch_size=settings.batch_size,
        device=settings.device,
        on_progress=None if progress is None else (lambda f: progress("separate", f)),
    )


def separate_array(
    model: SeparationModel,
    audio: np.ndarray,
    sample_rate: int,
    plan: StemPlan,
    settings: EngineSettings,
    progress: ProgressFn | None = None,
) -> dict[str, np.ndarray]:
    """Separate a signal held in memory.

    Shape:
        ``audio``: ``[C, T]``; returns ``{stem: [C, T]}`` at ``sample_rate``.
    """
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise AudioError(None, f"expected audio shaped [channels, samples] with samples > 0, got {audio.shape}")
    if not np.isfinite(audio).all():
        raise AudioError(None, "input contains NaN or infinite samples")
    channels, frames = audio.shape
    model = model.at_input_rate(sample_rate)
    x = resample(audio.astype(np.float32), sample_rate, model.sample_rate)
    extend = _extends(model, sample_rate)
    names = model.sources if extend else plan.outputs
    back = {s: StreamResampler(model.sample_rate, sample_rate, channels, total_out=frames) for s in names}
    parts: dict[str, list[np.ndarray]] = {s: [] for s in names}

    def read(start: int, length: int) -> np.ndarray:
        return padded_read(start, length, x.shape[1], channels, lambda lo, hi: x[:, lo:hi])

    def emit(block: np.ndarray) -> None:
        stems = dict(zip(model.sources, block)) if extend else plan(block)
        for stem, y in stems.items():
            parts[stem].append(np.array(back[stem].process(y)))  # a copy: the block is a view of the engine's buffer

    _run(model, read, x.shape[1], channels, emit, settings, progress)
    for s in names:
        parts[s].append(back[s].flush())
    out = {
        s: p[0] if len(p) == 1 or all(q.shape[1] == 0 for q in p[1:]) else np.concatenate(p, axis=1)
        for s, p in ((s, parts.pop(s)) for s in names)
    }
    if extend:
        full = BandExtension(model.sample_rate, sample_rate, model.sources, channels).process(
            high_band(audio.astype(np.float32), x, sample_rate, model.sample_rate), out
        )
        out = plan(np.stack([full[s] for s in model.sources]))
    return out


def _extends(model: SeparationModel, rate: int) -> bool:
    return model.band_extension and rate > model.sample_rate and len(model.sources) > 1


class _WorkFileReader:
    """Random-access reads of the float32 work file, zero-padded outside the track."""

    def __init__(self, path: Path) -> None:
        self.file = sf.SoundFile(str(path))
        self.total, self.channels = self.file.frames, self.file.channels

    def _fetch(self, lo: int, hi: int) -> np.ndarray:
        self.file.seek(lo)
        return self.file.read(hi - lo, dtype="float32", always_2d=True).T

    def __call__(self, start: int, length: int) -> np.ndarray:
        return padded_read(start, length, self.total, self.channels, self._fetch)

    def close(self) -> None:
        self.file.close()


def _maybe_file(path: Path, wanted: bool, info):
    """A float32 work file at the input's rate, or a stand-in that writes nothing."""
    if not wanted:
        return contextlib.nullcontext(None)
    return sf.SoundFile(str(path), "w", samplerate=info.sample_rate, channels=info.channels, subtype="FLOAT")


def separate_file(
    model: SeparationModel,
    path: Path,
    outputs: dict[str, Path],
    plan: StemPlan,
    settings: EngineSettings,
    fmt: OutputFormat,
    clip_mode: str = "rescale",
    start: float = 0.0,
    duration: float | None = None,
    progress: ProgressFn | None = None,
    block_frames: int = 1 << 18,
) -> FileResult:
    """Separate one file into one file per stem (see the module docstring for the passes)."""
    t0 = time.perf_counter()
    info = probe(path)
    model = model.at_input_rate(info.sample_rate)
    if fmt.container == "mp3" and info.channels > 2:
        raise AudioError(path, f"has {info.channels} channels; mp3 holds at most 2 (use wav or flac output)")
    out_root = Path(min((p.parent for p in outputs.values()), key=lambda p: len(p.parts)))
    created = _missing_dirs({p.parent for p in outputs.values()})
    out_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".demixer-work-", dir=out_root))
    writers: list[AudioWriter] = []
    ok = False
    try:
        # 1. prepare (with the band a low-rate model cannot see, kept aside when the model gives it back)
        to_model = StreamResampler(info.sample_rate, model.sample_rate, info.channels)
        extend = _extends(model, info.sample_rate)
        high = HighBand(info.sample_rate, model.sample_rate, info.channels) if extend else None
        frames_in = 0
        with (
            sf.SoundFile(
                str(work / "input.wav"), "w", samplerate=model.sample_rate, channels=info.channels, subtype="FLOAT"
            ) as f,
            _maybe_file(work / "high.wav", extend, info) as hf,
        ):
            for block in iter_blocks(info, start=start, duration=duration, block_frames=block_frames):
                frames_in += block.shape[1]
                down = to_model.process(block)
                f.write(down.T)
                if high is not None:
                    hf.write(high.process(block, down).T)
                if progress and info.frames:
                    progress("prepare", min(1.0, frames_in / max(info.frames, 1)))
            tail = to_model.flush()
            f.write(tail.T)
            if high is not None:
                hf.write(high.flush(tail).T)
        if frames_in == 0:
            raise AudioError(path, "contains no audio samples")

        # 2. separate
        reader = _WorkFileReader(work / "input.wav")
        peak = 0.0
        names = model.sources if extend else plan.outputs
        back = {
            s: StreamResampler(model.sample_rate, info.sample_rate, info.channels, total_out=frames_in) for s in names
        }
        stem_files = {
            s: sf.SoundFile(
                str(work / f"{i}.wav"), "w", samplerate=info.sample_rate, channels=info.channels, subtype="FLOAT"
            )
            for i, s in enumerate(plan.outputs)
        }
        extension = BandExtension(model.sample_rate, info.sample_rate, model.sources, info.channels) if extend else None
        residual = _WorkFileReader(work / "high.wav") if extend else None
        given = 0  # residual frames handed out so far

        def write(stems: dict[str, np.ndarray]) -> None:
            nonlocal peak, given
            if extension is not None and residual is not None:  # at the input's rate: add the high band, then plan
                n = next(iter(stems.values())).shape[1]
                if not n:
                    return
                full = extension.process(residual(given, n), stems)
                given += n
                stems = plan(np.stack([full[s] for s in model.sources]))
            for stem, y in stems.items():
                if y.size:
                    peak = max(peak, float(np.abs(y).max()))
                    stem_files[stem].write(y.T)

        def emit(block: np.ndarray) -> None:
            stems = dict(zip(model.sources, block)) if extend else plan(block)
            write({stem: back[stem].process(y) for stem, y in stems.items()})

        try:
            _run(model, reader, reader.total, info.channels, emit, settings, progress)
            write({stem: r.flush() for stem, r in back.items()})
        finally:
            reader.close()
            if residual is not None:
                residual.close()
            for f in stem_files.values():
                f.close()

        # 3. write
        gain = clip_gain(peak, clip_mode)
        if gain != 1.0:
            log.warning(
                "%s: levels changed: all stems scaled by %.2f dB (peak %.3f) to avoid clipping (--clip-mode rescale)",
                path.name,
                20 * np.log10(gain),
                peak,
            )
        clipped = 0
        must_clamp = not fmt.is_float or clip_mode == "clamp"  # integer samples cannot exceed full scale
        for i, stem in enumerate(plan.outputs):
            writer = AudioWriter(outputs[stem], info.sample_rate, info.channels, fmt)
            writers.append(writer)
            with sf.SoundFile(str(work / f"{i}.wav")) as f:
                for y in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                    y = y.T * np.float32(gain)
                    if must_clamp:
                        over = np.abs(y) > 1.0
                        if over.any():
                            clipped += int(over.sum())
                            y = np.clip(y, -1.0, 1.0)
                    writer.write(y)
            if progress:
                progress("write", (i + 1) / len(plan.outputs))
        if clipped:
            log.warning("%s: %d samples clamped to full scale", path.name, clipped)
        committed: list[Path] = []
        try:
            for writer in writers:
                committed.append(writer.commit())
        except BaseException:
            for p in committed:  # all stems or none
                p.unlink(missing_ok=True)
            raise
        writers.clear()
        ok = True
    finally:
        for writer in writers:
            writer.abort()
        shutil.rmtree(work, ignore_errors=True)
        if not ok:  # leave no empty folders behind either
            for d in sorted(created, key=lambda d: len(d.parts), reverse=True):
                try:
                    d.rmdir()
                except OSError:
                    pass
    seconds = time.perf_counter() - t0
    result = FileResult(
        path, dict(outputs), frames_in / info.sample_rate, seconds, info.sample_rate, info.channels, gain, clipped
    )
    log.info("%s: %.1f s of audio separated in %.1f s (RTF %.3f)", path.name, result.duration, seconds, result.rtf)
    return result
