"""``demixer batch``: plan outputs, skip what is finished, run the rest on an engine, record everything."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DemixerError, OptionsError
from ..files import temp_glob
from ..options import SeparationOptions
from ..separation import Separator
from .engines import run_local, run_ray
from .manifest import ResultsManifest, collect_inputs, finished

ENGINES = ("local", "ray")


@dataclass
class BatchSummary:
    manifest: Path
    total: int
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Seconds of audio separated per wall-clock second."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0


def _remove_leftovers(outputs: dict[str, Path]) -> None:
    """Temporary files of an interrupted separation of these outputs (atomic writers' ``.NAME.*.part``
    files and the engine's ``.demixer-work-*`` folders); finished outputs are never touched."""
    import shutil

    for path in outputs.values():
        folder = path.parent
        if folder.is_dir():
            for tmp in folder.glob(temp_glob(path)):
                tmp.unlink(missing_ok=True)
            for work in folder.glob(".demixer-work-*"):
                shutil.rmtree(work, ignore_errors=True)


def run_batch(
    inputs: list[str],
    options: SeparationOptions,
    *,
    engine: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    manifest: str | Path | None = None,
    progress: bool = True,
) -> BatchSummary:
    """Separate every input; re-running the same command only does what is missing.

    Raises:
        OptionsError: unknown engine or no inputs.
    """
    if engine not in ENGINES:
        raise OptionsError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    if workers < 1:
        raise OptionsError(f"--workers must be >= 1, got {workers}")
    paths = collect_inputs(inputs)
    if not paths:
        raise DemixerError(f"no audio files found in {' '.join(inputs)}")
    planner = Separator(options=options)  # names the model and its stems, as `demixer separate` would
    plans = planner.output_paths(paths)
    store = ResultsManifest(Path(manifest) if manifest else Path(options.out) / planner.model_name / "manifest.jsonl")
    records = store.read()
    summary = BatchSummary(store.path, len(paths))
    todo: list[tuple[str, dict[str, str]]] = []
    for path, outputs in zip(paths, plans):
        key = str(path)
        previous = records.get(key)
        if finished(previous, outputs):
            summary.skipped += 1
            continue
        foreign = [str(p) for p in outputs.values() if p.exists()]
        if foreign and previous is None and not options.overwrite:
            refused = {
                "input": key,
                "outputs": {k: str(v) for k, v in outputs.items()},
                "status": "failed",
                "error": f"output exists and is not from this batch: {foreign[0]} (use --overwrite)",
            }
            store.append(refused)
            summary.failed += 1
            summary.failures.append(refused)
            continue
        if previous is not None:  # ours from a run that stopped: drop what a killed writer may have left
            _remove_leftovers(outputs)
        todo.append((key, {k: str(v) for k, v in outputs.items()}))
    for key, claimed in todo:  # this batch owns these outputs from now on (a killed run may redo them)
        store.append({"input": key, "outputs": claimed, "status": "started"})
    worker_options = {f.name: getattr(options, f.name) for f in dataclasses.fields(SeparationOptions)}
    del planner
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="item", desc=f"batch ({engine}, {workers} worker{'s' if workers > 1 else ''})")
    start = time.perf_counter()
    stream = (
        run_local(todo, worker_options, workers)
        if engine == "local"
        else run_ray(todo, worker_options, workers, ray_address)
    )
    try:
        for record in stream:
            store.append(record)
            if record["status"] == "ok":
                summary.ok += 1
                summary.audio_seconds += record.get("duration", 0.0)
            else:
                summary.failed += 1
                summary.failures.append(record)
            summary.wall_seconds = time.perf_counter() - start
            if bar is not None:
                hours_per_hour = summary.throughput
                bar.set_postfix_str(f"ok {summary.ok}, failed {summary.failed}, {hours_per_hour:.1f} audio h/h")
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    summary.wall_seconds = time.perf_counter() - start
    store.compact()
    return summary
