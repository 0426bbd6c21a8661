"""Do the report's quality signals track true quality? The learned quality estimator against the older signals, on
real stems the estimator never trained or was validated on.

    python benchmarks/quality_estimates.py [--excerpt 30] [--json quality_estimates.json]

Tracks (from ../shared/data, read here only): Caesium and Francium of music/train, cut into 30 s excerpts (each
excerpt a track), and the MUSDB18 excerpt of music/valid. The estimator trained on Hydrogen, Sodium and synthetic
songs and was validated on Rubidium (its card lists them), so none of these tracks shaped it.
Separators: demixer-4stem, demixer-karaoke, hpss, repet-sim, center (each estimate a row; Francium has no bass, so
its bass estimates test "source absent" instead of SDR).

Printed: Spearman rank correlation between each signal and the stem's true whole-excerpt SDR
(``10 log10(|s|² / |s - ŝ|²)``), pooled and within each stem name, the estimator's mean absolute error in dB, and how
often it calls an absent source absent. Older signals enter with the sign that should track quality (leakage,
artifacts and silence negated), so a positive correlation is good for every column.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from demixer.estimator.features import track_sdr, window_features  # noqa: E402
from demixer.estimator.predict import estimate  # noqa: E402
from demixer.evaluation.quality import quality_signals  # noqa: E402
from demixer.separation import Separator  # noqa: E402

DATA = Path(os.environ.get("DEMIXER_SHARED_DATA", ROOT.parent / "shared" / "data"))
STEMS = ("vocals", "drums", "bass", "other")
MODELS = ("demixer-4stem", "demixer-karaoke", "hpss", "repet-sim", "center")
# signal -> sign with which it should rise with quality
OLD_SIGNALS = {"consistency_db": 1, "mask_confidence": 1, "leakage": -1, "artifacts": -1, "profile": 1}


def tracks(excerpt: float) -> list[tuple[str, np.ndarray, dict[str, np.ndarray], int]]:
    """``(name, mixture, references, rate)`` of each test track; the mixture is the sum of the references."""
    refs: dict[str, dict[str, np.ndarray]] = {}
    size = int(excerpt * 44100)
    for song in ("caesium", "francium"):
        stems = {k: sf.read(DATA / "music" / "train" / song / f"{k}.ogg", dtype="float32")[0].T for k in STEMS}
        n = min(s.shape[-1] for s in stems.values())
        for i, lo in enumerate(range(0, n - size + 1, size)):
            refs[f"{song}-{i:02d}"] = {k: s[:, lo : lo + size] for k, s in stems.items()}
    musdb = DATA / "music" / "valid" / "musdb18_easton_ellises_falcon69_excerpt"
    refs["musdb-excerpt"] = {k: sf.read(musdb / f"{k}.flac", dtype="float32")[0].T for k in STEMS}
    return [(name, sum(r.values()), r, 44100) for name, r in refs.items()]


def reference(stem: str, mixture: np.ndarray, refs: dict[str, np.ndarray]) -> np.ndarray:
    return mixture - refs[stem[3:]] if stem.startswith("no_") else refs[stem]


def spearman(true: list[float], signal: list[float | None]) -> float | None:
    pairs = [(t, s) for t, s in zip(true, signal, strict=True) if s is not None and np.isfinite(s)]
    if len(pairs) < 4:
        return None
    return round(float(spearmanr(*zip(*pairs, strict=True))[0]), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--excerpt", type=float, default=30.0, help="seconds per excerpt of the full songs")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    report_seconds = estimator_seconds = audio_seconds = 0.0
    items = tracks(args.excerpt)
    for model in args.models:
        separator = Separator(name=model)
        for name, mixture, refs, rate in items:
            stems = {k: v.numpy() for k, v in separator.separate_tensor(mixture, rate).items()}
            t0 = time.perf_counter()
            signals = quality_signals(mixture, stems, rate)
            t1 = time.perf_counter()
            estimate(*window_features(mixture, stems, rate))  # the estimator alone, timed
            estimator_seconds += time.perf_counter() - t1
            report_seconds += t1 - t0
            audio_seconds += mixture.shape[-1] / rate
            for stem, output in stems.items():
                s = signals["stems"][stem]
                rows.append(
                    {
                        "track": name,
                        "model": model,
                        "stem": stem,
                        "true_sdr": track_sdr(reference(stem, mixture, refs), output),
                        "predicted_sdr": s.get("predicted_sdr"),
                        "probably_absent": s.get("probably_absent"),
                        "consistency_db": signals["consistency_db"],
                        "mask_confidence": signals["mask_confidence"],
                        **{k: s.get(k) for k in ("leakage", "artifacts", "profile")},
                    }
                )
        print(f"{model}: {len(items)} tracks done", flush=True)

    scored = [r for r in rows if np.isfinite(r["true_sdr"])]
    absent = [r for r in rows if not np.isfinite(r["true_sdr"])]
    groups = {
        "pooled": scored,
        **{k: [r for r in scored if r["stem"] == k] for k in sorted({r["stem"] for r in scored})},
    }
    columns = ["predicted_sdr", *OLD_SIGNALS]
    table: dict[str, dict[str, object]] = {}
    for group, members in groups.items():
        true = [r["true_sdr"] for r in members]
        table[group] = {"n": len(members)}
        for col in columns:
            sign = OLD_SIGNALS.get(col, 1)
            table[group][col] = spearman(true, [None if r[col] is None else sign * r[col] for r in members])
        errors = [abs(r["predicted_sdr"] - r["true_sdr"]) for r in members if r["predicted_sdr"] is not None]
        table[group]["mae_db"] = round(float(np.mean(errors)), 2) if errors else None
    present_called_absent = sum(bool(r["probably_absent"]) for r in scored)
    summary = {
        "estimates": len(rows),
        "tracks": len(items),
        "table": table,
        "absent_sources": len(absent),
        "absent_called_absent": sum(bool(r["probably_absent"]) for r in absent),
        "present_called_absent": present_called_absent,
        "report_rtf": round(report_seconds / audio_seconds, 4),
        "estimator_rtf": round(estimator_seconds / audio_seconds, 4),
    }
    header = f"{'group':<10} {'n':>4} " + " ".join(f"{c[:14]:>14}" for c in columns) + f" {'MAE dB':>7}"
    print(header)
    for group, row in table.items():
        cells = " ".join(f"{'-' if row[c] is None else row[c]:>14}" for c in columns)
        print(f"{group:<10} {row['n']:>4} {cells} {'-' if row['mae_db'] is None else row['mae_db']:>7}")
    print(
        f"absent sources: {summary['absent_called_absent']} of {len(absent)} called absent; present sources called "
        f"absent: {present_called_absent} of {len(scored)}; on one thread, the estimator ran at RTF "
        f"{summary['estimator_rtf']} and the whole report (every signal) at {summary['report_rtf']}"
    )
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
