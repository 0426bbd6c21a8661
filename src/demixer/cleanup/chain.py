"""``demixer clean``: dialogue separation, denoising, loudness normalisation and a true-peak limit, streamed.

Stages (each skippable with ``skip``; settings in :class:`~demixer.cleanup.options.CleanOptions`):

1. ``dialogue``: speech / music / effects (``--task dialogue``'s model). Where neither music nor effects reach
   ``presence_db`` relative to the input, the input goes on unchanged (a model's leftovers are not worth its
   artefacts) and the report says so.
2. ``denoise``: speech / noise (``demixer-denoise``, or e.g. ``deepfilternet3``).
3. Dereverberation is not offered: the project has no model it could ship honestly for it (no trained one, no
   measured gain); the report says so.
4. ``loudness``: one gain to the integrated loudness target (ITU-R BS.1770-4, gated; pyloudnorm's filters).
5. ``limit``: a look-ahead limiter on the 4x-oversampled true peak. The limiter lowers loudness where it
   acts, so stages 4 and 5 are repeated with a corrected gain until the output is within 0.2 LU of the target.

Every pass reads and writes files block by block, so memory stays flat in the recording's length. The outputs
(``OUT/TRACK/speech.wav``, the removed parts under ``removed/`` as 32-bit float WAV at the same gain, so that
``speech + removed`` is the input at that gain, before the limiter, and ``report.json``; ``effects`` is all the
dialogue stage took out besides music, the model's effects and what none of its masks claimed) appear together or
not at all; the input is only read.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..audio.io import iter_blocks, probe
from ..audio.writer import AudioWriter, OutputFormat
from ..errors import DemixerError, OutputExistsError
from ..files import write_text_atomic
from ..separation.naming import plan_outputs, track_name
from .loudness import LoudnessMeter, TruePeakLimiter, TruePeakMeter, to_db
from .options import CleanOptions

log = logging.getLogger("demixer")

BLOCK = 1 << 16
LOUDNESS_TOLERANCE_LU = 0.2  # the gain is corrected until the output is this close to the target
MAX_PASSES = 4
#: each stage's share of a file's progress (start, span)
PROGRESS = {"dialogue": (0.0, 0.5), "denoise": (0.5, 0.3), "loudness": (0.8, 0.2), "done": (1.0, 0.0)}
SILENT_DB = -100.0  # an input whose RMS is below this (dBFS) is silent: nothing to separate
DNSMOS_WINDOWS = 30  # at most this many 9 s DNSMOS windows per file (about 0.2 s each on one core)
Callback = Callable[[dict[str, Any]], None]


@dataclass
class CleanResult:
    """What cleaning one file produced."""

    input: Path
    outputs: dict[str, Path]  # "speech" (the cleaned speech) and the removed parts ("music", "effects", "noise")
    report: dict[str, Any]
    report_path: Path
    seconds: float
    extra_files: dict[str, Path] = field(default_factory=dict)  # provenance.json / .html


def _blocks(path: Path) -> Iterator[np.ndarray]:
    """``[C, n]`` float32 blocks of a file (any format the project reads)."""
    yield from iter_blocks(probe(path), block_frames=BLOCK)


def _rms_db(path: Path, meter: LoudnessMeter | None = None) -> float:
    """A file's RMS level in dB; with ``meter``, its blocks also go to that loudness meter (one read for both)."""
    total, count = 0.0, 0
    for block in _blocks(path):
        total += float(np.square(block, dtype=np.float64).sum())
        count += block.size
        if meter is not None:
            meter.add(block)
    return 10 * float(np.log10(total / max(count, 1) + 1e-20))


def _mixed(parts: list[tuple[Path, float]]) -> Iterator[np.ndarray]:
    """The sum of several equally long files, each times its gain, block by block."""
    streams = [(_blocks(p), g) for p, g in parts if g]
    for blocks in zip(*(s for s, _ in streams)):
        yield sum(g * b for b, (_, g) in zip(blocks, streams)).astype(np.float32)


def _write(path: Path, blocks: Iterator[np.ndarray], rate: int, channels: int) -> None:
    """Blocks into a float32 work file."""
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=channels, subtype="FLOAT") as f:
        for b in blocks:
            f.write(b.T)


def _loudness(blocks: Iterator[np.ndarray], rate: int, channels: int) -> float:
    meter = LoudnessMeter(rate, channels)
    for b in blocks:
        meter.add(b)
    return meter.integrated()


def _dnsmos_of(path: Path, seconds: float) -> dict[str, Any]:
    """DNSMOS P.835 of a file, or why there is none. Long files are scored on ``DNSMOS_WINDOWS`` of the
    reference's one-per-second windows, evenly spread and read one by one (time and memory stay bounded);
    ``windows`` says how many were scored of how many."""
    from ..audio.io import load_audio
    from ..evaluation.dnsmos import WINDOW, dnsmos
    from ..extras import missing_modules

    missing = missing_modules("eval")
    if missing:
        return {"unavailable": f"pip install 'demixer[eval]' (missing: {', '.join(missing)})"}
    span = WINDOW / 16000
    every = max(1, int(np.floor(seconds - span)) + 1)  # the reference's windows, one per second
    try:
        if every <= DNSMOS_WINDOWS:
            return {
                **dnsmos(load_audio(path, sample_rate=16000, mono=True)[0], 16000),
                "windows": f"{every} of {every}",
            }
        starts = np.linspace(0, every - 1, DNSMOS_WINDOWS).round().astype(int)
        scores = [
            dnsmos(load_audio(path, sample_rate=16000, mono=True, start=float(s), duration=span)[0], 16000)
            for s in starts
        ]
    except ValueError as exc:  # silence
        return {"unavailable": str(exc)}
    mean = {k: round(float(np.mean([sc[k] for sc in scores])), 3) for k in ("sig", "bak", "ovrl")}
    return {**mean, "windows": f"{len(starts)} of {every}"}


class Cleaner:
    """Loads the chain's models once and cleans files with them.

    Args:
        options: a :class:`CleanOptions` (or give its fields as keyword arguments).
        progress: progress bars on stderr.
        callback: called with ``{"file", "stage", "progress"}`` as work advances.
    """

    def __init__(
        self,
        options: CleanOptions | None = None,
        *,
        progress: bool = False,
        callback: Callback | None = None,
        **kwargs: Any,
    ) -> None:
        from ..separation.separator import Separator

        self.options = (options or CleanOptions()).replace(**kwargs)
        o = self.options
        self.callback = callback
        work_format: dict[str, Any] = dict(float32=True, clip_mode="none", overwrite=True, device=o.device)
        self.dialogue = (
            Separator(
                o.dialogue_model, task="dialogue", progress=progress, callback=self._forward("dialogue"), **work_format
            )
            if o.runs("dialogue")
            else None
        )
        if self.dialogue is not None and set(self.dialogue.sources) != {"speech", "music", "effects"}:
            raise DemixerError(
                f"--dialogue-model: {self.dialogue.model_name} gives {', '.join(self.dialogue.sources)}, "
                "not speech, music and effects"
            )
        self.denoiser = (
            Separator(
                o.denoiser,
                task="denoise",
                atten_lim=o.atten_lim,
                progress=progress,
                callback=self._forward("denoise"),
                **work_format,
            )
            if o.runs("denoise")
            else None
        )
        if self.denoiser is not None and "speech" not in self.denoiser.sources:
            raise DemixerError(f"--denoiser: {self.denoiser.model_name} has no speech output")
        first = self.dialogue or self.denoiser
        self.device = str(first.device) if first is not None else o.device
        self.models = {stage: sep.model_name for stage, sep in self.separators().items()}
        given = {"dialogue": o.dialogue_model, "denoise": o.denoiser}
        self.model_keys = {stage: given[stage] or name for stage, name in self.models.items()}  # paths stay paths

    def separators(self) -> dict[str, Any]:
        """The chain's separators by stage (only the stages that run)."""
        return {stage: sep for stage, sep in (("dialogue", self.dialogue), ("denoise", self.denoiser)) if sep}

    def _say(self, path: Path, stage: str, fraction: float) -> None:
        if self.callback is not None:
            lo, span = PROGRESS[stage]
            self.callback({"file": path.name, "stage": stage, "progress": lo + span * fraction})

    def _forward(self, stage: str) -> Callback:
        """A separator's progress, reported as this stage's share of the file's."""
        return lambda info: self._say(Path(info["file"]), stage, info["progress"])

    def track_folders(self, inputs: list[Path]) -> list[Path]:
        """``OUT/TRACK`` of each input; two inputs with the same track name get ``-2``, ``-3``, ... in order."""
        plans = plan_outputs(inputs, Path(self.options.out), "", ("report",), "json", "{track}/{stem}.{ext}")
        return [plan["report"].parent for plan in plans]

    def output_paths(self, path: Path, folder: Path | None = None) -> dict[str, Path]:
        """Where cleaning ``path`` writes (``folder``: its track folder, default ``OUT/TRACK``)."""
        folder = folder or Path(self.options.out) / track_name(path)
        return {
            "speech": folder / f"speech.{self.options.format}",
            "music": folder / "removed" / "music.wav",
            "effects": folder / "removed" / "effects.wav",
            "noise": folder / "removed" / "noise.wav",
            "report": folder / "report.json",
        }

    def clean_file(self, path: str | Path, folder: Path | None = None) -> CleanResult:
        """Clean one file (see the module docstring), with a provenance record when ``provenance`` is on.
        Raises :class:`OutputExistsError` before any work when an output exists and ``overwrite`` is off."""
        t0 = time.perf_counter()
        path = Path(path)
        o = self.options
        info = probe(path)
        targets = self.output_paths(path, folder)
        if not o.overwrite:
            existing = [p for p in targets.values() if p.exists()]
            if existing:
                raise OutputExistsError(f"{path}: output exists: {existing[0]} (use --overwrite to replace it)")
        folder = targets["report"].parent
        made = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        if o.provenance:
            from ..provenance.record import ProvenanceRecorder, begin

            started, settings = begin()
        work = Path(tempfile.mkdtemp(prefix=".demixer-clean-", dir=folder))
        try:
            result = self._clean(path, info, targets, work, t0)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            if made and not any(folder.iterdir()):  # leave no empty folder behind either
                folder.rmdir()
            raise
        shutil.rmtree(work, ignore_errors=True)
        if o.provenance:
            ProvenanceRecorder("clean", o.as_dict()).record_clean(self, path, result, started, settings)
        return result

    def _clean(self, path: Path, info: Any, targets: dict[str, Path], work: Path, t0: float) -> CleanResult:
        o = self.options
        rate, channels = info.sample_rate, info.channels
        report: dict[str, Any] = {
            "input": str(path),
            "duration_s": round(info.frames / rate, 3),
            "sample_rate": rate,
            "channels": channels,
            "stages": {},
        }
        stages = report["stages"]
        speech: Path = path
        removed: dict[str, tuple[Path, float]] = {}  # name -> (work file, gain of what is removed)
        input_loudness = LoudnessMeter(rate, channels)
        input_db = _rms_db(path, input_loudness)

        # 1. dialogue
        if self.dialogue is not None:
            self._say(path, "dialogue", 0.0)
            parts = {s: work / f"dialogue-{s}.wav" for s in ("speech", "music", "effects")}
            self.dialogue.separate_to_files(path, parts)
            levels = {s: round(_rms_db(parts[s]) - input_db, 2) for s in ("music", "effects")}
            silent = input_db < SILENT_DB
            present = {s: level >= o.presence_db and not silent for s, level in levels.items()}
            entry: dict[str, Any] = {"model": self.dialogue.model_name, "level_db": levels, "present": present}
            if any(present.values()):
                speech = parts["speech"]
                removed["music"] = (parts["music"], 1.0 - o.keep_music)
                # everything else the stage took out: the model's effects and what no mask claimed, so that
                # speech + music + effects is the input exactly
                rest = work / "dialogue-rest.wav"
                _write(rest, _mixed([(path, 1.0), (speech, -1.0), (parts["music"], -1.0)]), rate, channels)
                removed["effects"] = (rest, 1.0)
                entry["applied"] = True
            else:
                entry["applied"] = False
                entry["why"] = (
                    "the input is silent"
                    if silent
                    else f"neither music nor effects reach {o.presence_db:g} dB: the input went on unchanged"
                )
            stages["dialogue"] = entry
        else:
            stages["dialogue"] = {"applied": False, "why": "skipped (--skip dialogue)"}

        # 2. denoise
        if self.denoiser is not None:
            self._say(path, "denoise", 0.0)
            parts = {s: work / f"denoise-{s}.wav" for s in self.denoiser.sources}
            self.denoiser.separate_to_files(speech, parts)
            speech = parts["speech"]
            for s, p in parts.items():
                if s != "speech":
                    removed[s] = (p, 1.0)
            stages["denoise"] = {"model": self.denoiser.model_name, "applied": True}
        else:
            stages["denoise"] = {"applied": False, "why": "skipped (--skip denoise)"}

        # 3. dereverberation: not offered
        stages["dereverb"] = {"applied": False, "why": "not offered: the project has no dereverberation model to ship"}

        # 4 + 5. loudness and true-peak limit, repeated until the output is on target
        mix: list[tuple[Path, float]] = [(speech, 1.0)]
        if o.keep_music and "music" in removed:
            mix.append((removed["music"][0], o.keep_music))
        self._say(path, "loudness", 0.0)
        before = _loudness(_mixed(mix), rate, channels)
        report["loudness_in_lufs"] = _round(input_loudness.integrated())
        gain_db = 0.0
        measurable = bool(np.isfinite(before))
        if o.runs("loudness") and not measurable:
            log.warning(
                "%s: the cleaned speech has no measurable loudness (silent, or under one 400 ms block): "
                "no loudness gain applied",
                path.name,
            )
        if o.runs("loudness") and measurable:
            gain_db = o.lufs - before
        fmt = OutputFormat(o.format, "int24")
        passes: list[dict[str, Any]] = []
        for attempt in range(MAX_PASSES):

            def pass_progress(fraction: float, attempt: int = attempt) -> None:  # the first pass is most of it
                self._say(path, "loudness", min(1.0, (attempt + fraction) / 2))

            out_lufs, out_tp, min_gain = self._write_speech(
                mix,
                gain_db,
                work,
                rate,
                channels,
                fmt,
                pass_progress,
            )
            passes.append({"gain_db": round(gain_db, 3), "lufs": _round(out_lufs), "true_peak_dbtp": _round(out_tp)})
            off = o.lufs - out_lufs
            if not (o.runs("loudness") and np.isfinite(off) and abs(off) > LOUDNESS_TOLERANCE_LU):
                break
            gain_db += off
        stages["loudness"] = (
            {"applied": True, "target_lufs": o.lufs, "measured_lufs": _round(before), "gain_db": round(gain_db, 3)}
            if o.runs("loudness") and measurable
            else {"applied": False, "why": "skipped (--skip loudness)"}
            if not o.runs("loudness")
            else {"applied": False, "why": "no measurable loudness (silent, or under one 400 ms gating block)"}
        )
        stages["limit"] = (
            {"applied": True, "ceiling_dbtp": o.true_peak, "largest_reduction_db": round(max(0.0, -to_db(min_gain)), 3)}
            if o.runs("limit")
            else {"applied": False, "why": "skipped (--skip limit)"}
        )
        stages["passes"] = passes
        report["loudness_out_lufs"] = _round(out_lufs)
        report["true_peak_out_dbtp"] = _round(out_tp)
        if o.runs("loudness") and measurable and abs(o.lufs - out_lufs) > 0.5:
            log.warning(
                "%s: output loudness %.2f LUFS, %.2f LU from the target", path.name, out_lufs, out_lufs - o.lufs
            )

        # removed parts, at the same gain, float so nothing clips
        gain = 10 ** (gain_db / 20)
        written: dict[str, Path] = {"speech": targets["speech"]}
        writers: list[AudioWriter] = []
        try:
            for name, (part, share) in removed.items():
                w = AudioWriter(targets[name], rate, channels, OutputFormat("wav", "float32"))
                writers.append(w)
                for block in _blocks(part):
                    w.write(block * np.float32(gain * share))
                written[name] = targets[name]
            report["removed"] = {name: str(p) for name, p in written.items() if name != "speech"}
            report["models"] = dict(self.models)
            report["dnsmos"] = {
                "input": _dnsmos_of(path, info.frames / rate),
                "cleaned": _dnsmos_of(work / "speech-final.part", info.frames / rate),
            }
            report["chain"] = describe_chain(report)
            report["seconds"] = round(time.perf_counter() - t0, 3)
            committed: list[Path] = []
            try:  # all outputs or none
                for w in writers:
                    committed.append(w.commit())
                shutil.move(str(work / "speech-final.part"), targets["speech"])
                committed.append(targets["speech"])
                write_text_atomic(targets["report"], json.dumps(report, indent=1))
            except BaseException:
                for p in committed:
                    p.unlink(missing_ok=True)
                raise
        finally:
            for w in writers:
                w.abort()  # a no-op once committed
        for name in ("music", "effects", "noise"):  # an earlier run's parts this run did not remove (--overwrite)
            if name not in written:
                targets[name].unlink(missing_ok=True)
        self._say(path, "done", 1.0)
        return CleanResult(path, written, report, targets["report"], time.perf_counter() - t0)

    def _write_speech(
        self,
        mix: list[tuple[Path, float]],
        gain_db: float,
        work: Path,
        rate: int,
        channels: int,
        fmt: OutputFormat,
        progress: Callable[[float], None],
    ) -> tuple[float, float, float]:
        """One pass of stages 4-5: the speech times the gain, through the limiter, into ``work`` (in the output
        format, ``speech-final.part``). Returns ``(LUFS, dBTP, the limiter's lowest gain)``."""
        gain = np.float32(10 ** (gain_db / 20))
        limiter = TruePeakLimiter(rate, channels, self.options.true_peak - 0.1) if self.options.runs("limit") else None
        loud, peak = LoudnessMeter(rate, channels), TruePeakMeter(channels)
        final = work / "speech-final.part"
        with sf.SoundFile(
            str(final), "w", samplerate=rate, channels=channels, format=fmt.container.upper(), subtype="PCM_24"
        ) as out:

            def put(y: np.ndarray) -> None:
                if y.shape[1]:
                    y = np.clip(y, -1.0, 1.0)
                    loud.add(y)
                    peak.add(y)
                    out.write(y.T)

            total, done = max(probe(mix[0][0]).frames, 1), 0
            for block in _mixed(mix):
                y = block * gain
                put(limiter.process(y) if limiter else y)
                done += block.shape[1]
                progress(min(1.0, done / total))
            if limiter:
                put(limiter.flush())
        return loud.integrated(), peak.dbtp(), limiter.min_gain if limiter else 1.0


def clean(path: str | Path, **options: Any) -> CleanResult:
    """One-call cleanup of a file (``options``: :class:`CleanOptions` fields), streamed to ``OUT/TRACK/``."""
    return Cleaner(**options).clean_file(path)


def _round(x: float) -> float | None:
    return round(float(x), 3) if np.isfinite(x) else None


def describe_chain(report: dict[str, Any]) -> str:
    """The processing chain in plain words, from a clean report."""
    s = report["stages"]
    words = []
    d = s["dialogue"]
    if d.get("applied"):
        words.append(f"The speech was separated from music and effects with {d['model']}.")
    elif "model" in d:
        words.append(f"Dialogue separation ({d['model']}) changed nothing: {d['why']}.")
    if s["denoise"].get("applied"):
        words.append(f"Noise was removed with {s['denoise']['model']}.")
    words.append("No dereverberation was applied.")
    if s["loudness"].get("applied"):
        words.append(
            f"The level was changed by {s['loudness']['gain_db']:+.2f} dB to {s['loudness']['target_lufs']:g} LUFS."
        )
    else:
        words.append(f"The level was not changed: {s['loudness']['why']}.")
    if s["limit"].get("applied"):
        words.append(
            f"Peaks were limited to {s['limit']['ceiling_dbtp']:g} dBTP "
            f"(at most {s['limit']['largest_reduction_db']:.2f} dB of reduction)."
        )
    return " ".join(words)
