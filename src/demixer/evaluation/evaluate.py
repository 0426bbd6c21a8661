"""``demixer evaluate``: run models over a dataset, score them the way the field does, write reports.

For each model and track it writes ``OUT/<model>/<track>.json`` (museval's schema for music:
framewise BSSEval v4 SDR/SIR/SAR/ISR per target; for speech, track-level metrics), then
``OUT/results.csv`` (one row per model, track, target, metric) and a summary of medians over
tracks, with the mixture-as-estimate baseline (``mixture``) and, when asked, oracle rows. A
track whose JSON exists is not run again, so an interrupted evaluation resumes where it stopped; models that
earlier runs evaluated into the same folder, on the same tracks, stay in results.csv and the summary.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..dsp.oracle import ORACLES, oracle_separate
from ..errors import DemixerError
from ..files import write_text_atomic
from ..models.registry import model_display_name
from .bsseval import bss_eval_v4
from .datasets import load_dataset
from .metrics import pesq, pit, sdr, si_sdr, si_sdr_i, stoi
from .quality import quality_signals

BASELINE = "mixture"
ACCOMPANIMENT = ("accompaniment", "no_vocals", "instrumental")
MUSIC_METRICS = ("SDR", "SIR", "SAR", "ISR")


@dataclass
class TrackResult:
    model: str
    track: str
    kind: str
    metrics: dict[str, dict[str, float]]  # target -> metric -> value (track level)
    seconds: float = 0.0
    rtf: float | None = None
    quality: dict[str, Any] | None = None


@dataclass
class EvalSummary:
    out: Path
    kind: str
    results: list[TrackResult] = field(default_factory=list)

    def medians(self) -> dict[str, dict[str, dict[str, float]]]:
        """model -> target -> metric -> median over tracks (NaNs ignored)."""
        table: dict[str, dict[str, dict[str, list[float]]]] = {}
        for r in self.results:
            for target, values in r.metrics.items():
                for metric, v in values.items():
                    table.setdefault(r.model, {}).setdefault(target, {}).setdefault(metric, []).append(v)
        out: dict[str, dict[str, dict[str, float]]] = {}
        for model, targets in table.items():
            for target, metrics in targets.items():
                for metric, vals in metrics.items():
                    finite = [v for v in vals if v is not None and not math.isnan(v)]
                    out.setdefault(model, {}).setdefault(target, {})[metric] = (
                        float(np.median(finite)) if finite else float("nan")
                    )
        return out


def _q(x: float) -> float:
    """museval's quantisation: 5 decimals, infinities as NaN."""
    return float("nan") if not np.isfinite(x) else round(float(x), 5)


def _targets_for(sources: tuple[str, ...] | list[str], refs: dict[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    """The references a model's stems are scored against (a karaoke model's accompaniment and a
    ``--two-stems X`` run's ``no_X`` are the sum of the other stems)."""
    if kind == "speakers":
        return {k: v for k, v in refs.items() if k.startswith("speaker")}
    out: dict[str, np.ndarray] = {}
    for s in sources:
        rest = "vocals" if s in ACCOMPANIMENT else s[len("no_") :] if s.startswith("no_") else None
        if s in refs:
            out[s] = refs[s]
        elif rest in refs:
            out[s] = cast(np.ndarray, sum(v for k, v in refs.items() if k != rest))
    return out


def _score(
    kind: str, mixture: np.ndarray, targets: dict[str, np.ndarray], estimates: dict[str, np.ndarray], sample_rate: int
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Track-level metrics per target and the JSON body for this track."""
    names = list(targets)
    ref = np.stack([targets[n] for n in names])
    est = np.stack([estimates[n] for n in names])
    if kind == "music":
        res = bss_eval_v4(reference=ref, estimate=est, window=sample_rate, hop=sample_rate)
        med = res.median()
        metrics = {n: {m: float(med[m][i]) for m in MUSIC_METRICS} for i, n in enumerate(names)}
        for i, n in enumerate(names):
            metrics[n]["uSDR"] = sdr(reference=ref[i], estimate=est[i])
        body = {
            "targets": [
                {
                    "name": n,
                    "frames": [
                        {
                            "time": float(t),
                            "duration": 1.0,
                            "metrics": {m: _q(getattr(res, m.lower())[i, f]) for m in MUSIC_METRICS},
                        }
                        for f, t in enumerate(res.times(sample_rate))
                    ],
                }
                for i, n in enumerate(names)
            ]
        }
        return metrics, body
    if kind == "speakers":
        scores, perm = pit(reference=ref, estimate=est, metric=si_sdr)
        metrics = {}
        for j, n in enumerate(names):
            e = est[perm[j]]
            metrics[n] = {
                "SI-SDR": float(scores[j]),
                "SI-SDRi": si_sdr_i(reference=ref[j], estimate=e, mixture=mixture),
                "SDR": sdr(reference=ref[j], estimate=e),
            }
        return metrics, {
            "targets": [{"name": n, "metrics": m} for n, m in metrics.items()],
            "permutation": perm.tolist(),
        }
    # denoise: the speech stem carries the score
    metrics = {}
    for i, n in enumerate(names):
        m = {
            "SI-SDR": si_sdr(reference=ref[i], estimate=est[i]),
            "SI-SDRi": si_sdr_i(reference=ref[i], estimate=est[i], mixture=mixture),
            "SDR": sdr(reference=ref[i], estimate=est[i]),
        }
        if n == "speech":
            m["PESQ-wb"] = pesq(reference=ref[i], estimate=est[i], sample_rate=sample_rate, mode="wb")
            m["STOI"] = stoi(reference=ref[i], estimate=est[i], sample_rate=sample_rate)
            m["ESTOI"] = stoi(reference=ref[i], estimate=est[i], sample_rate=sample_rate, extended=True)
        metrics[n] = m
    return metrics, {"targets": [{"name": n, "metrics": m} for n, m in metrics.items()]}


class _Runner:
    """Produces the estimates of one model (a registered name, a checkpoint, an oracle or the mixture)."""

    def __init__(self, name: str, separator_options: dict[str, Any]) -> None:
        self.name = name
        self.display = name
        self.separator = None
        if name != BASELINE and not name.startswith("oracle-"):
            from ..separation import Separator

            self.separator = Separator(name, **separator_options)
            self.display = model_display_name(name)
            if separator_options.get("two_stems"):
                self.display += f"+{separator_options['two_stems']}"  # its own results folder
        elif name.startswith("oracle-") and name[len("oracle-") :] not in ORACLES:
            raise DemixerError(f"unknown oracle {name!r} (choose from {', '.join('oracle-' + o for o in ORACLES)})")

    def sources(self, refs: dict[str, np.ndarray]) -> list[str]:
        if self.separator is not None:
            return list(self.separator.sources)
        return list(refs)

    def run(self, mixture: np.ndarray, targets: dict[str, np.ndarray], sample_rate: int) -> dict[str, np.ndarray]:
        if self.name == BASELINE:
            return {n: mixture for n in targets}
        if self.separator is None:
            names = list(targets)
            est = oracle_separate(self.name[len("oracle-") :], np.stack([targets[n] for n in names]), mixture)
            return dict(zip(names, est))
        import torch

        stems = self.separator.separate_tensor(torch.from_numpy(mixture), sample_rate)
        return {k: v.numpy() for k, v in stems.items()}


def _write_json(path: Path, body: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(body, indent=1, allow_nan=True))


def evaluate(
    models: list[str],
    dataset: str | Path,
    out: str | Path,
    *,
    kind: str = "auto",
    oracles: bool = False,
    baseline: bool = True,
    limit: int | None = None,
    quality: bool = True,
    report: bool = True,
    report_seconds: float = 20.0,
    separator_options: dict[str, Any] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> EvalSummary:
    """Evaluate ``models`` on ``dataset`` and write the reports under ``out``.

    Args:
        models: names or checkpoint paths; ``mixture`` and ``oracle-irm|ibm|mwf`` are accepted too.
        kind: ``auto``, ``music``, ``speakers`` or ``denoise``.
        oracles: add the three oracle separators (upper bounds).
        baseline: add the mixture-as-estimate baseline.
        quality: also compute the reference-free quality signals of each separation.
        report: write ``report.html`` with spectrograms and audio players.
        progress: called with ``(done, total, label)`` after each model-track pair.
    """
    out = Path(out)
    items = load_dataset(dataset, kind, limit)
    kind = items[0].kind
    names = list(
        dict.fromkeys(
            [*models, *([BASELINE] if baseline else []), *([f"oracle-{o}" for o in ORACLES] if oracles else [])]
        )
    )
    runners = [_Runner(n, separator_options or {}) for n in names]
    summary = EvalSummary(out, kind)
    total = len(items) * len(runners)
    done = 0
    report_data: list[dict[str, Any]] = []
    for item in items:
        cache: tuple | None = None
        track_report: dict[str, Any] = {"track": item.name, "models": {}}
        for runner in runners:
            path = out / runner.display / f"{item.name}.json"
            earlier = _read_result(path, kind) if path.exists() else None
            if earlier is not None:  # resume: finished before
                summary.results.append(earlier)
            else:
                if cache is None:
                    cache = item.load()
                mixture, refs, rate = cache
                targets = _targets_for(runner.sources(refs), refs, kind)
                if not targets:
                    raise DemixerError(
                        f"model {runner.name} predicts {runner.sources(refs)}, none of which the dataset "
                        f"references ({', '.join(refs)}) can score"
                    )
                start = time.perf_counter()
                estimates = runner.run(mixture, targets, rate)
                seconds = time.perf_counter() - start
                if kind == "speakers":
                    estimates = {
                        t: estimates[s] for t, s in zip(targets, [s for s in runner.sources(refs) if s in estimates])
                    }
                missing = [t for t in targets if t not in estimates]
                if missing:
                    raise DemixerError(f"model {runner.name} gave no {', '.join(missing)} stem")
                n = mixture.shape[-1]
                estimates = {t: np.asarray(estimates[t], np.float64)[..., :n] for t in targets}
                metrics, body = _score(
                    kind,
                    mixture.astype(np.float64),
                    {t: targets[t].astype(np.float64) for t in targets},
                    estimates,
                    rate,
                )
                rtf = None if runner.separator is None else seconds / (n / rate)
                q = quality_signals(mixture, estimates, rate) if quality and runner.name != BASELINE else None
                body["museval_version"] = "4"  # the schema field museval writes; scores follow its v4 conventions
                body["demixer"] = {
                    "model": runner.name,
                    "kind": kind,
                    "metrics": metrics,
                    "seconds": round(seconds, 3),
                    "rtf": None if rtf is None else round(rtf, 4),
                    "quality": q,
                }
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_json(path, body)
                summary.results.append(TrackResult(runner.display, item.name, kind, metrics, seconds, rtf, q))
                if report:
                    track_report.update(mixture=mixture, rate=rate)
                    track_report["models"][runner.display] = {
                        "targets": targets,
                        "estimates": estimates,
                        "metrics": metrics,
                        "quality": q,
                    }
            done += 1
            if progress:
                progress(done, total, f"{runner.display} / {item.name}")
        if report and track_report["models"]:
            from .report import write_track_assets

            report_data.append(write_track_assets(out, track_report, report_seconds))
    asked = {r.model for r in summary.results}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in asked):  # models of earlier runs
        for item in items:
            earlier = _read_result(folder / f"{item.name}.json", kind)
            if earlier is not None:
                summary.results.append(earlier)
    write_csv(summary, out / "results.csv")
    if report:
        from .report import write_report

        write_report(out, summary, report_data)
    return summary


def _read_result(path: Path, kind: str) -> TrackResult | None:
    """The result a track's JSON holds (its folder is the model), or None where there is none of this kind."""
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    d = body.get("demixer") if isinstance(body, dict) else None
    if not isinstance(d, dict) or d.get("kind", kind) != kind or "metrics" not in d:
        return None
    return TrackResult(
        path.parent.name, path.stem, kind, d["metrics"], d.get("seconds", 0.0), d.get("rtf"), d.get("quality")
    )


def write_csv(summary: EvalSummary, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "track", "target", "metric", "value"])
        for r in summary.results:
            for target, values in r.metrics.items():
                for metric, v in values.items():
                    w.writerow([r.model, r.track, target, metric, "" if v is None or math.isnan(v) else f"{v:.5f}"])


def format_summary(summary: EvalSummary) -> str:
    """The terminal table: median over tracks per model and target."""
    med = summary.medians()
    metrics = list(dict.fromkeys(m for targets in med.values() for values in targets.values() for m in values))
    header = f"{'model':<22} {'target':<14}" + "".join(f"{m:>9}" for m in metrics)
    lines = [
        f"median over {len({r.track for r in summary.results})} track(s), {summary.kind}",
        header,
        "-" * len(header),
    ]
    for model, targets in med.items():
        for target, values in targets.items():
            lines.append(f"{model:<22} {target:<14}" + "".join(f"{values.get(m, float('nan')):>9.2f}" for m in metrics))
    return "\n".join(lines)
