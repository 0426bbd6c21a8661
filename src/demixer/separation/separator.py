"""The public separation API: :class:`Separator` and :func:`separate`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..audio.io import load_audio
from ..devices import resolve_device
from ..errors import AudioError, OptionsError, OutputExistsError
from ..files import write_text_atomic
from ..models.base import SeparationModel
from ..models.defaults import check_speaker_count
from ..models.fast import FastModel, make_fast
from ..models.registry import choose_default, load_for_inference, model_display_name
from ..options import SeparationOptions
from .naming import plan_outputs, track_name
from .pipeline import EngineSettings, FileResult, separate_array, separate_file
from .stems import StemPlan

Callback = Callable[[dict[str, Any]], None]
TARGET_SILENT_DB = 40.0  # an extracted voice this far below the input is reported as not found
log = logging.getLogger("demixer")


class Separator:
    """Loads a model once and separates tensors, arrays and files with it.

    Args:
        name: model name or checkpoint path (default: the model of ``task``).
        model: an already built :class:`SeparationModel` (instead of ``name``).
        progress: show a progress bar per file (on stderr).
        callback: called with ``{"file", "stage", "progress"}`` as work advances
            (``progress`` is the fraction of the current input done).
        **options: any :class:`~demixer.options.SeparationOptions` field: ``device``,
            ``segment``, ``overlap``, ``shifts``, ``batch_size``, ``two_stems``, ``stems``,
            ``atten_lim``, ``start``, ``duration``, output format fields, ...

    Examples:
        >>> sep = Separator("hpss")                                  # doctest: +SKIP
        >>> stems = sep.separate_tensor(torch.randn(2, 44100), 44100)  # doctest: +SKIP
        >>> sorted(stems)                                             # doctest: +SKIP
        ['drums', 'other']
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        model: SeparationModel | None = None,
        progress: bool = False,
        callback: Callback | None = None,
        options: SeparationOptions | None = None,
        **kwargs: Any,
    ) -> None:
        base = options or SeparationOptions()
        self.options = base.replace(**({"name": name} if name is not None else {}), **kwargs)
        self.device = resolve_device(self.options.device)
        fast = self.options.speed == "fast"
        if model is None:
            key = self.options.name or self._default_model()
            # ours to fuse and make fast; a model passed in is left as it is (fast mode changes a copy)
            model = load_for_inference(key, speed=self.options.speed, device=str(self.device))
            self.model_name = model_display_name(key)
        else:
            self.model_name = self.options.name or type(model).__name__.lower()
            if fast and not isinstance(model, FastModel):
                model = make_fast(model, self.device, copy_model=True)
        if isinstance(model, FastModel):
            log.info("%s, fast mode: %s", self.model_name, model.summary())
        self.model = model.to(self.device).eval()
        check_speaker_count(self.model_name, tuple(self.model.sources), self.options.speakers)
        self._enroll()
        self.plan = StemPlan.for_model(model, self.options.two_stems, self.options.stems, self.options.atten_lim)
        self.progress = progress
        self.callback = callback
        self.settings = EngineSettings(
            self.options.segment, self.options.overlap, self.options.shifts, self.options.batch_size, self.device
        )

    def _default_model(self) -> str:
        """The task's default (:mod:`demixer.models.defaults`); says why, and logs the hint of a better one."""
        choice = choose_default(self.options.task, self.options.two_stems, self.options.speakers)
        log.debug("%s: %s, %s", choice.task, choice.name, choice.reason)
        if choice.hint:
            log.info("%s", choice.hint)
        return choice.name

    def _enroll(self) -> None:
        """Tell a target-speaker extractor whose voice to keep (``enroll``); refuse it for other models."""
        wants = getattr(self.model, "needs_enrollment", False)
        if self.options.enroll is None:
            if wants and not self.model.is_enrolled:  # a model enrolled through the API is ready
                raise OptionsError(
                    f"--enroll: {self.model_name} extracts one speaker; give a clip of that voice "
                    "with --enroll voice.wav"
                )
            return
        if not wants:
            raise OptionsError(
                f"--enroll: {self.model_name} does not take an enrolment clip (it separates "
                f"{', '.join(self.model.sources)}); use a target-speaker model (--task extract)"
            )
        extractor = cast(Any, self.model)  # a target-speaker model (needs_enrollment)
        if self.options.enroll.endswith(".spk"):  # a saved enrolment (demixer enroll): no audio needed
            extractor.load_enrollment(self.options.enroll)
            return
        audio, sr = load_audio(self.options.enroll)
        extractor.enroll(audio, sr)

    @property
    def sources(self) -> tuple[str, ...]:
        """The stems this separator outputs (after ``two_stems``/``stems``)."""
        return self.plan.outputs

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    def _reporter(self, label: str):
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=100,
                desc=label[:40],
                unit="%",
                leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
            )
        weights = {"prepare": (0.0, 0.1), "separate": (0.1, 0.85), "write": (0.95, 0.05)}

        def report(stage: str, fraction: float) -> None:
            lo, span = weights.get(stage, (0.0, 1.0))
            overall = lo + span * fraction
            if bar is not None:
                bar.n = round(100 * overall, 1)
                bar.refresh()
            if self.callback is not None:
                self.callback({"file": label, "stage": stage, "progress": overall})

        return report, bar

    def separate_tensor(
        self, wav: torch.Tensor | np.ndarray, sample_rate: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Separate a waveform held in memory.

        Args:
            wav: the mixture. Shape: ``[C, T]`` or ``[T]`` (mono).
            sample_rate: its rate (default: the model's).

        Returns:
            ``{stem: Tensor}``, each shaped like ``wav`` (``[C, T]``, or ``[T]`` for 1-D input),
            at ``sample_rate``.
        """
        arr = wav.detach().cpu().float().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, dtype=np.float32)
        squeeze = arr.ndim == 1
        arr = np.atleast_2d(arr)
        if arr.ndim != 2:
            raise AudioError(
                None, f"expected a waveform shaped [channels, samples] or [samples], got {tuple(arr.shape)}"
            )
        report, bar = self._reporter("array")
        try:
            stems = separate_array(
                self.model, arr, sample_rate or self.model.sample_rate, self.plan, self.settings, report
            )
        finally:
            if bar is not None:
                bar.close()
        return {s: torch.from_numpy(y[0] if squeeze else y) for s, y in stems.items()}

    def separate_file(self, path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], int]:
        """Load a file (``start``/``duration`` applied) and separate it in memory.

        Returns:
            ``({stem: Tensor [C, T]}, sample_rate)``, at the file's own rate. For long files
            prefer :meth:`separate_to_files`, which streams through disk.
        """
        audio, sr = load_audio(path, start=self.options.start, duration=self.options.duration)
        return self.separate_tensor(audio, sr), sr

    def output_paths(self, inputs: list[Path]) -> list[dict[str, Path]]:
        """Where :meth:`separate_to_files` writes each input's stems (never colliding)."""
        o = self.options
        return plan_outputs(inputs, Path(o.out), self.model_name, self.sources, o.output_format.extension, o.filename)

    def separate_to_files(self, path: str | os.PathLike[str], outputs: dict[str, Path] | None = None) -> FileResult:
        """Separate a file into one file per stem, streaming (memory flat in the file's length).

        Args:
            path: input audio file.
            outputs: ``{stem: path}``; default from ``out`` and ``filename``.

        Raises:
            AudioError: bad input (nothing is written).
            OutputExistsError: an output exists and ``overwrite`` is false.

        With ``provenance``, a record of the work is written beside the stems (``result.provenance_paths``).
        """
        path = Path(path)
        outputs = outputs or self.output_paths([path])[0]
        if not self.options.overwrite:
            existing = [str(p) for p in outputs.values() if p.exists()]
            if existing:
                raise OutputExistsError(f"{path}: output exists: {existing[0]} (use --overwrite to replace it)")
        if self.options.provenance:
            from ..provenance.record import ProvenanceRecorder, begin

            started, settings = begin()
        report, bar = self._reporter(path.name)
        try:
            result = separate_file(
                self.model,
                path,
                outputs,
                self.plan,
                self.settings,
                self.options.output_format,
                self.options.clip_mode,
                self.options.start,
                self.options.duration,
                report,
            )
        finally:
            if bar is not None:
                bar.close()
        if getattr(self.model, "needs_enrollment", False) and "target" in result.outputs:
            self._check_target_found(path, result)
        if self.options.report:
            self._write_quality(path, result)
        if self.options.provenance:
            ProvenanceRecorder("separate", self.options.as_dict()).record_separation(
                self, path, result, started, settings, track_name(path)
            )
        return result

    def analyse(
        self, path: str | os.PathLike[str], outputs: dict[str, Path], quality: bool = True, images: Path | None = None
    ) -> dict[str, Any] | None:
        """Quality signals (and with ``images``, the PNGs) of the stems written from the separated span of
        ``path`` (``start``/``duration``), read block by block: memory flat in the track's length
        (:func:`demixer.evaluation.analysis.analyse_separation`)."""
        from ..evaluation.analysis import analyse_separation

        return analyse_separation(
            path, outputs, start=self.options.start, duration=self.options.duration, quality=quality, images=images
        )

    def _check_target_found(self, path: Path, result: FileResult, seconds: float = 60.0) -> None:
        """Say so (a warning, never silence without a word) when the extracted voice is nearly silent or, with a
        calibrated ``min_target_similarity``, does not sound like the enrolled voice: the enrolled voice is then
        probably not in the recording. Reads at most the first ``seconds`` of the target."""
        rate = self.model.sample_rate  # the speaker encoder's
        target, _ = load_audio(result.outputs["target"], duration=seconds, sample_rate=rate)
        mixture, _ = load_audio(path, start=self.options.start, duration=seconds, sample_rate=rate)
        level = 10 * np.log10(float(np.mean(np.square(target))) + 1e-12)
        reference = 10 * np.log10(float(np.mean(np.square(mixture))) + 1e-12)
        if level < reference - TARGET_SILENT_DB:
            log.warning(
                "%s: the extracted voice is nearly silent (%.0f dB below the input): the enrolled voice was "
                "probably not found in this recording",
                path.name,
                reference - level,
            )
            return
        extractor = cast(Any, self.model)
        threshold = getattr(extractor, "min_target_similarity", None)
        if threshold is None:
            return
        similarity = extractor.similarity(torch.from_numpy(target.mean(axis=0, keepdims=True))[None].to(self.device))
        if similarity < threshold:
            log.warning(
                "%s: the extracted voice does not sound like the enrolled one (similarity %.2f, below %.2f): the "
                "enrolled voice is probably not in this recording",
                path.name,
                similarity,
                threshold,
            )

    def _write_quality(self, path: Path, result: FileResult) -> None:
        """Reference-free quality signals of the written stems, saved as ``<track>.quality.json`` beside them."""
        import json

        result.quality = cast(dict[str, Any], self.analyse(path, result.outputs))  # quality=True: a dict
        first = next(iter(result.outputs.values()))
        result.quality_path = first.parent / f"{track_name(path)}.quality.json"
        write_text_atomic(
            result.quality_path, json.dumps({"input": str(path), "model": self.model_name, **result.quality}, indent=1)
        )


def separate(
    x: str | os.PathLike[str] | np.ndarray | torch.Tensor,
    sample_rate: int | None = None,
    name: str | None = None,
    **options: Any,
) -> dict[str, torch.Tensor]:
    """One-call separation of a path, an array or a tensor.

    Args:
        x: a file path, or a waveform shaped ``[C, T]`` or ``[T]``.
        sample_rate: the waveform's rate (ignored for paths; default: the model's).
        name: model name or checkpoint path (default: the task's model).
        **options: :class:`~demixer.options.SeparationOptions` fields.

    Returns:
        ``{stem: Tensor}`` at the input's rate.
    """
    sep = Separator(name, **options)
    if isinstance(x, (str, os.PathLike)):
        return sep.separate_file(x)[0]
    return sep.separate_tensor(x, sample_rate)
