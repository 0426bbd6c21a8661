"""BSSEval v4: demixer.evaluation.bss_eval_v4 vs museval.evaluate, side by side on the same 30 s track.

Inputs: a 30 s stereo excerpt of the four real stems of a ../shared/data/music/train song (references) and
four estimates (IRM-masked mixture), 1 s windows and hops (museval's defaults). Both are run `--repeats` times,
alternating, in this one process; the script prints each time, the median ratio and the largest framewise
difference of every metric.

    python benchmarks/bsseval_speed.py [--track rubidium --start 100 --seconds 30 --repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from demixer.data import find_tracks  # noqa: E402
from demixer.evaluation.bsseval import bss_eval_v4  # noqa: E402
from demixer.transforms import STFT  # noqa: E402


def irm_estimates(ref: np.ndarray) -> np.ndarray:
    stft = STFT(4096, 1024)
    mix = torch.from_numpy(ref.sum(0))
    spec = stft(mix)
    mags = stft(torch.from_numpy(ref)).abs()
    masks = mags / (mags.sum(0, keepdim=True) + 1e-10)
    return stft.inverse(masks * spec[None], ref.shape[-1]).numpy()


def main() -> None:
    import museval

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "music" / "train"))
    ap.add_argument("--track", default="rubidium")
    ap.add_argument("--start", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sr = 44100
    track = next(t for t in find_tracks(args.data) if t.name == args.track)
    ref = np.stack(
        [
            track.read(s, int(args.start * sr), int(args.seconds * sr), sr, 2)
            for s in ("vocals", "drums", "bass", "other")
        ]
    ).astype(np.float64)
    est = irm_estimates(ref)
    print(
        f"{args.track} {args.start:.0f}-{args.start + args.seconds:.0f} "
        f"s: 4 sources x 2 channels x {ref.shape[-1]} samples; "
        f"torch threads {torch.get_num_threads()}"
    )
    ours_t, theirs_t = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ours = bss_eval_v4(reference=ref, estimate=est)
        ours_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        theirs = museval.evaluate(ref.transpose(0, 2, 1), est.transpose(0, 2, 1))
        theirs_t.append(time.perf_counter() - t)
        print(f"  demixer {ours_t[-1]:.3f} s   museval {theirs_t[-1]:.3f} s")
    ratio = statistics.median(theirs_t) / statistics.median(ours_t)
    print(
        f"median: demixer {statistics.median(ours_t):.3f} s, museval "
        f"{statistics.median(theirs_t):.3f} s -> {ratio:.1f}x faster"
    )
    for name, theirs_m in zip(("sdr", "isr", "sir", "sar"), theirs):
        diff = np.nanmax(np.abs(getattr(ours, name) - theirs_m))
        print(f"  max |{name.upper()} demixer - museval| over frames: {diff:.2e} dB")
    print("medians (demixer):", {k: np.round(v, 2).tolist() for k, v in ours.median().items()})


if __name__ == "__main__":
    main()
