"""Karaoke by blending two separators' vocals: w * demixer-4stem + (1 - w) * REPET-SIM.

Scored as `demixer evaluate --two-stems vocals` scores (museval median over 1 s windows of vocals and of
mixture - vocals against the sum of the other stems; uSDR over the whole track) on caesium (the held-out song of
the training album: validation, where a weight may be chosen) and the MUSDB excerpt (music/valid: test, report
only), plus the tracks of every ``--valid`` folder (MUSDB layout: ``DIR/<track>/{vocals,drums,bass,other}.*``;
e.g. synthetic songs made with a seed no shipped model trained on). The weight with the best mean, over the
validation tracks, of the median vocals SDR is printed as the choice, with its test score; demixer-karaoke ships
that choice (its card holds this benchmark's JSON). Weight 1 is demixer-4stem alone.

    .venv/bin/python benchmarks/karaoke_blend.py [--weights 0,0.25,0.5,0.75,1] [--valid DIR] [--json blend.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from demixer import Separator
from demixer.audio import load_audio
from demixer.evaluation import bss_eval_v4, sdr

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {
    "caesium (validation)": DATA / "music" / "train" / "caesium",
    "MUSDB excerpt (test)": DATA / "music" / "valid" / "musdb18_easton_ellises_falcon69_excerpt",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="0,0.25,0.5,0.75,1", help="weights of demixer-4stem's vocals")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    ap.add_argument("--valid", action="append", type=Path, default=[], help="more validation tracks (MUSDB layout)")
    args = ap.parse_args()
    sets = dict(SETS)
    for root in args.valid:
        for track in sorted(d for d in root.iterdir() if d.is_dir()):
            sets[f"{root.name}/{track.name} (validation)"] = track
    torch.set_num_threads(args.threads)
    weights = [float(w) for w in args.weights.split(",")]
    model, repet = Separator("demixer-4stem", two_stems="vocals"), Separator("repet-sim")
    print(f"{'set':<22} {'w 4stem':>7} {'vocals':>7} {'no_vocals':>9} {'uSDR':>6}")
    rows = []
    for label, folder in sets.items():
        refs = {s: load_audio(next(folder.glob(f"{s}.*")))[0] for s in ("vocals", "drums", "bass", "other")}
        mix = sum(refs.values())
        rest = mix - refs["vocals"]
        a = model.separate_tensor(torch.from_numpy(mix), 44100)["vocals"].numpy()
        b = repet.separate_tensor(torch.from_numpy(mix), 44100)["vocals"].numpy()
        for w in weights:
            v = w * a + (1 - w) * b
            med = bss_eval_v4(
                reference=np.stack([refs["vocals"], rest]), estimate=np.stack([v, mix - v]), window=44100, hop=44100
            ).median()
            usdr = float(sdr(reference=refs["vocals"], estimate=v))
            rows.append(
                {
                    "set": label,
                    "weight_demixer_4stem": w,
                    "weight_repet_sim": round(1 - w, 4),
                    "vocals_median_sdr": round(float(med["SDR"][0]), 3),
                    "no_vocals_median_sdr": round(float(med["SDR"][1]), 3),
                    "vocals_usdr": round(usdr, 3),
                }
            )
            print(f"{label:<22} {w:>7.2f} {med['SDR'][0]:>7.2f} {med['SDR'][1]:>9.2f} {usdr:>6.2f}", flush=True)
    valid = [r for r in rows if r["set"].endswith("(validation)")]
    mean = {
        w: float(np.mean([r["vocals_median_sdr"] for r in valid if r["weight_demixer_4stem"] == w])) for w in weights
    }
    best = max(weights, key=lambda w: mean[w])
    test = {r["weight_demixer_4stem"]: r["vocals_median_sdr"] for r in rows if r["set"].endswith("(test)")}
    tracks = len({r["set"] for r in valid})
    print(
        f"mean vocals median SDR over {tracks} validation tracks: "
        + ", ".join(f"w {w:g}: {mean[w]:.2f}" for w in weights)
    )
    print(f"choice: w {best:g} (test: {test[best]:.2f} dB; best on test would be w {max(test, key=test.get):g})")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "metric": "museval median SDR over 1 s windows (dB), scored as demixer "
                    "evaluate --two-stems vocals scores; uSDR over the whole track",
                    "rows": rows,
                    "validation_tracks": tracks,
                    "mean_validation_vocals_median_sdr": {str(w): round(v, 3) for w, v in mean.items()},
                    "chosen_weight_demixer_4stem": best,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
