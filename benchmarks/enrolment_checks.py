"""Calibrate the two enrolment checks of a target-speaker model on voices it may tune on, and report them on
held-out talkers.

    python benchmarks/enrolment_checks.py --voices VOICES [-n demixer-extract] [--json out.json]

1. ``min_enrollment_consistency``: an enrolment clip holding several voices is refused. A clip's consistency
   is the lowest cosine between the embeddings of two of its 1.5 s windows
   (``EnrolledVoice.enrollment_consistency``). Clips of one talker (4-8 s) are compared with clips that change
   talker half way. The threshold keeps 99 % of the calibration set's one-talker clips.
2. ``min_target_similarity``: an extracted voice whose embedding is less similar to the enrolment's is reported as
   probably not the enrolled voice. The model extracts the enrolled voice from mixtures holding it (with one
   other talker) and from mixtures of two other talkers. The threshold keeps 95 % of the first.

Calibration voices: the training and validation voices of configs/demixer-extract.yaml. Held-out talkers:
benchmarks/extract_quality.py's (VCTK, Valentini p287, KLettres en_GB, tn, uk).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared" / "data"
RATE = 16000

from extract_quality import held_out_talkers  # noqa: E402
from speakers_by_gender import load_talkers, loudest_cut  # noqa: E402

CALIBRATION = ("ar", "cs", "da", "de", "en", "es", "fr", "he", "hu", "it", "lt", "ml", "nb", "nds", "nl", "pt_BR", "ru")


def calibration_talkers(voices: Path) -> dict[str, list[np.ndarray]]:
    talkers = load_talkers([voices / v for v in CALIBRATION], RATE)
    for folder in ("librispeech", "librispeech_rtvc", "cmu_arctic", "sms_tools"):
        talkers.update({f"{folder}/{k}": v for k, v in load_talkers([SHARED / "speech" / folder], RATE).items()})
    return {k: v for k, v in talkers.items() if sum(len(c) for c in v) >= 6 * RATE}


def clip_of(clips: list[np.ndarray], seconds: float, rng: np.random.Generator) -> np.ndarray:
    whole = np.concatenate(clips)
    n = int(seconds * RATE)
    start = int(rng.integers(0, max(1, whole.size - n)))
    x = whole[start : start + n]
    return 0.1 * x / (np.sqrt(np.mean(x**2)) + 1e-9)


def consistency_scores(model: Any, talkers: dict[str, list[np.ndarray]], n: int, rng: np.random.Generator) -> dict:
    names = sorted(talkers)
    one, two = [], []
    for _ in range(n):
        a, b = rng.choice(len(names), 2, replace=False)
        seconds = float(rng.uniform(4, 8))
        single = clip_of(talkers[names[a]], seconds, rng)
        mixed = np.concatenate(
            [clip_of(talkers[names[a]], seconds / 2, rng), clip_of(talkers[names[b]], seconds / 2, rng)]
        )
        for clip, out in ((single, one), (mixed, two)):
            out.append(model.enrollment_consistency(torch.from_numpy(clip)[None, None]))
    return {"one_talker": one, "two_talkers": two}


def similarity_scores(model: Any, talkers: dict[str, list[np.ndarray]], n: int, rng: np.random.Generator) -> dict:
    from demixer.separation import Separator

    names = sorted(talkers)
    present, absent = [], []
    separator = None
    for _ in range(n):
        a, b, c = rng.choice(len(names), 3, replace=False)
        enrolment = clip_of(talkers[names[a]], 4.0, rng)
        model.enroll(enrolment, RATE)
        separator = separator or Separator(model=model, name="extractor", progress=False)
        target = loudest_cut(clip_of(talkers[names[a]], 8.0, rng), 4 * RATE)
        ratio = rng.uniform(-5.0, 10.0)
        for mix, out in (
            (
                0.1 * target / (np.sqrt(np.mean(target**2)) + 1e-9)
                + clip_of(talkers[names[b]], 4.0, rng) * 10 ** (-ratio / 20),
                present,
            ),
            (clip_of(talkers[names[b]], 4.0, rng) + clip_of(talkers[names[c]], 4.0, rng) * 10 ** (-ratio / 20), absent),
        ):
            est = separator.separate_tensor(torch.from_numpy(mix.astype(np.float32))[None], RATE)["target"]
            out.append(model.similarity(est[None].float()))
    return {"present": present, "absent": absent}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices", type=Path, required=True)
    ap.add_argument("-n", "--name", default="demixer-extract")
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from demixer.models.registry import load_for_inference

    torch.set_num_threads(1)
    model: Any = load_for_inference(args.name)
    model.min_enrollment_consistency = model.min_target_similarity = None  # measure, do not refuse
    sets = {"calibration": calibration_talkers(args.voices), "held-out": held_out_talkers(args.voices)}
    result: dict[str, Any] = {"model": args.name}
    for name, talkers in sets.items():
        rng = np.random.default_rng(args.seed)
        result[name] = {
            "consistency": consistency_scores(model, talkers, args.trials, rng),
            "similarity": similarity_scores(model, talkers, args.trials, rng),
        }
    cal = result["calibration"]
    thresholds = {
        "min_enrollment_consistency": float(np.quantile(cal["consistency"]["one_talker"], 0.01)),
        "min_target_similarity": float(np.quantile(cal["similarity"]["present"], 0.05)),
    }
    result["thresholds"] = thresholds
    print(
        f"{len(sets['calibration'])} calibration talkers, {len(sets['held-out'])} held-out, {args.trials} trials each"
    )
    print(f"{'set':<12} {'check':<34} {'kept (should pass)':>19} {'caught (should fail)':>21}")
    for name in sets:
        r = result[name]
        t = thresholds["min_enrollment_consistency"]
        kept = np.mean(np.array(r["consistency"]["one_talker"]) >= t)
        caught = np.mean(np.array(r["consistency"]["two_talkers"]) < t)
        print(f"{name:<12} {f'consistency >= {t:.3f}':<34} {100 * kept:18.0f}% {100 * caught:20.0f}%")
        result[name]["consistency_rates"] = {"kept": float(kept), "caught": float(caught)}
        t = thresholds["min_target_similarity"]
        kept = np.mean(np.array(r["similarity"]["present"]) >= t)
        caught = np.mean(np.array(r["similarity"]["absent"]) < t)
        print(f"{name:<12} {f'target similarity >= {t:.3f}':<34} {100 * kept:18.0f}% {100 * caught:20.0f}%")
        result[name]["similarity_rates"] = {"kept": float(kept), "caught": float(caught)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
