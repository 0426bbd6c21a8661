"""The HTML report of an evaluation: medians per model and target, then per track the
spectrograms (mixture, reference, estimate, error), audio players, quality signals, and the quality estimator's
per-second predicted SDR under each estimate's spectrogram (weak seconds red, absent grey), to set beside the true
scores above it.

Everything is a local file next to ``report.html`` (no network, no CDN).
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import OutputFormat, save_audio
from .plots import save_predicted_quality, save_spectrograms


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80] or "item"


def write_track_assets(out: Path, track: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Images and audio excerpts of one track; returns what the HTML page needs."""
    rate = track["rate"]
    n = min(track["mixture"].shape[-1], int(seconds * rate))
    folder = out / "report" / _slug(track["track"])
    fmt = OutputFormat(container="flac")
    mix_path = save_audio(folder / "mixture.flac", track["mixture"][..., :n], rate, fmt)
    entry: dict[str, Any] = {"track": track["track"], "mixture": mix_path.relative_to(out).as_posix(), "models": {}}
    refs_done: dict[str, str] = {}
    for model, data in track["models"].items():
        rows = []
        for target, ref in data["targets"].items():
            if target not in refs_done:
                refs_done[target] = (
                    save_audio(folder / f"reference_{_slug(target)}.flac", ref[..., :n], rate, fmt)
                    .relative_to(out)
                    .as_posix()
                )
            est = data["estimates"][target][..., :n]
            est_path = save_audio(
                folder / f"{_slug(model)}_{_slug(target)}.flac", np.clip(est, -1, 1).astype(np.float32), rate, fmt
            )
            image = save_spectrograms(
                folder / f"{_slug(model)}_{_slug(target)}.png",
                [
                    ("mixture", track["mixture"][..., :n]),
                    (f"reference {target}", ref[..., :n]),
                    (f"estimate {target} ({model})", est),
                    ("error (estimate - reference)", est - ref[..., :n]),
                ],
                rate,
            )
            predicted = ((data.get("quality") or {}).get("stems") or {}).get(target) or {}
            curve = None
            if predicted.get("predicted_sdr_per_second"):  # the quality estimator's view, beside the true scores
                curve = save_predicted_quality(
                    folder / f"{_slug(model)}_{_slug(target)}_predicted.png",
                    {target: data["estimates"][target]},
                    {target: predicted},
                    rate,
                ).relative_to(out)
            rows.append(
                {
                    "target": target,
                    "image": image.relative_to(out).as_posix(),
                    "predicted_image": curve.as_posix() if curve else None,
                    "verdict": predicted.get("verdict"),
                    "reference": refs_done[target],
                    "estimate": est_path.relative_to(out).as_posix(),
                    "metrics": data["metrics"].get(target, {}),
                }
            )
        entry["models"][model] = {"rows": rows, "quality": data["quality"]}
    return entry


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.2f}"
    return html.escape(str(v))


def write_report(out: Path, summary, tracks: list[dict[str, Any]]) -> Path:
    med = summary.medians()
    metrics = list(dict.fromkeys(m for targets in med.values() for values in targets.values() for m in values))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>demixer evaluation</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
        "td:first-child,td:nth-child(2){text-align:left}img{max-width:100%}section{margin-top:2em}"
        ".q{font-size:90%;color:#333}</style></head><body>",
        f"<h1>demixer evaluation</h1><p>{html.escape(summary.kind)} "
        f"· {len({r.track for r in summary.results})} track(s) · "
        "median over tracks of each track's median over 1 s frames (BSSEval v4) or track-level scores</p>",
        "<table><tr><th>model</th><th>target</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in metrics) + "</tr>",
    ]
    for model, targets in med.items():
        for target, values in targets.items():
            parts.append(
                f"<tr><td>{html.escape(model)}</td><td>{html.escape(target)}</td>"
                + "".join(f"<td>{_fmt(values.get(m, float('nan')))}</td>" for m in metrics)
                + "</tr>"
            )
    parts.append("</table>")
    for t in tracks:
        parts.append(
            f"<section><h2>{html.escape(t['track'])}</h2><p>mixture <audio "
            f"controls preload='none' src='{t['mixture']}'></audio></p>"
        )
        for model, data in t["models"].items():
            parts.append(f"<h3>{html.escape(model)}</h3>")
            q = data.get("quality")
            if q:
                parts.append(
                    f"<p class='q'>quality signals: consistency {q['consistency_db']} dB · mask confidence "
                    f"{q['mask_confidence']} · uncertain share {q['uncertain_share']}</p>"
                )
            for row in data["rows"]:
                scores = " · ".join(f"{html.escape(k)} {_fmt(v)}" for k, v in row["metrics"].items())
                parts.append(
                    f"<h4>{html.escape(row['target'])}: {scores}</h4>"
                    f"<p>reference <audio controls preload='none' src='{row['reference']}'></audio> "
                    f"estimate <audio controls preload='none' src='{row['estimate']}'></audio></p>"
                    f"<img src='{row['image']}' alt='spectrograms {html.escape(row['target'])}'>"
                )
                if row.get("predicted_image"):
                    parts.append(
                        f"<p class='q'>quality estimator (no reference): {html.escape(row['verdict'] or '')}</p>"
                        f"<img src='{row['predicted_image']}' alt='predicted SDR {html.escape(row['target'])}'>"
                    )
        parts.append("</section>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
