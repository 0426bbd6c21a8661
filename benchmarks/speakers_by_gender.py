"""Speaker separation on real talkers, same-gender and cross-gender pairs apart.

    python benchmarks/speakers_by_gender.py --voices VOICES [--voices MORE] [-n demixer-2spk -n sepformer-wsj02mix]
        [--pairs 40 --seconds 4 --seed 0 --json out.json]

``VOICES`` holds one folder per talker (``VOICES/<talker>/*.flac``, e.g. ``demixer data join`` output). Use
talkers no model under test was trained or validated on: demixer-2spk never saw KLettres' voices
(``demixer data join /usr/share/klettres --out VOICES --seconds 8 --seed 0``, Debian's ``klettres-data``) nor
Valentini's p287 (``../shared/data/denoising_pairs/valentini_p287/clean``).

Gender is not labelled in these sets: each talker is put in the lower or higher voice group by the median
fundamental frequency of its voiced frames (``--f0-split``, 165 Hz by default), and the table of talkers with
their F0 is printed so the grouping can be checked by ear. A pair is two talkers, one utterance each, cut to
``--seconds`` from its loudest part, both at the same RMS (0 dB), mixed at 8 kHz. Each model separates every
mixture through ``Separator`` (its own rate, chunking and defaults); the score is SI-SDRi of each talker's best
matching output (permutation-invariant), reported as mean and median over the talker estimates of each group.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

RATE = 8000


def median_f0(x: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 400.0) -> float:
    """Median F0 (Hz) of the voiced 40 ms frames: the autocorrelation peak between ``fmin`` and ``fmax``."""
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    energy = (frames**2).mean(axis=1)
    voiced = frames[energy > 0.1 * np.median(energy[energy > 0]) * 4]  # the louder frames
    lo, hi = int(sr / fmax), int(sr / fmin)
    f0 = []
    for f in voiced:
        f = (f - f.mean()) * np.hanning(frame)
        ac = np.correlate(f, f, mode="full")[frame - 1 :]
        if ac[0] <= 0:
            continue
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] / ac[0] > 0.5:  # clearly periodic
            f0.append(sr / lag)
    return float(np.median(f0)) if f0 else float("nan")


def load_talkers(folders: list[Path], rate: int = RATE) -> dict[str, list[np.ndarray]]:
    """Each talker's clips, mono at ``rate``: one talker per subfolder (or a folder with no subfolder)."""
    talkers: dict[str, list[np.ndarray]] = {}
    for folder in folders:
        groups = [d for d in sorted(folder.iterdir()) if d.is_dir()] or [folder]
        for d in groups:
            clips = []
            for path in sorted(p for p in d.rglob("*") if p.suffix.lower() in (".flac", ".wav", ".ogg")):
                x, sr = sf.read(path, dtype="float32", always_2d=True)
                clips.append(soxr.resample(x.mean(axis=1), sr, rate).astype(np.float32))
            if clips:
                talkers[f"{folder.name}/{d.name}" if d != folder else folder.name] = clips
    return talkers


def loudest_cut(x: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` samples of ``x`` with the most energy (zero-padded if shorter), at unit RMS."""
    if x.size < n:
        x = np.pad(x, (0, n - x.size))
    energy = np.convolve(x**2, np.ones(n), mode="valid")
    start = int(np.argmax(energy))
    cut = x[start : start + n]
    return cut / (np.sqrt(np.mean(cut**2)) + 1e-9)


def score(separator, a: np.ndarray, b: np.ndarray) -> list[float]:
    """SI-SDRi of each talker's best matching output (a 2-talker model's two outputs)."""
    import torch

    from demixer.evaluation.metrics import pit, si_sdr_i

    mix = 0.1 * (a + b)
    stems = separator.separate_tensor(torch.from_numpy(mix)[None], RATE)
    estimates = np.stack([stems[s].numpy()[0] for s in separator.sources])
    refs = np.stack([0.1 * a, 0.1 * b])
    _, order = pit(reference=refs, estimate=estimates)
    return [si_sdr_i(reference=refs[i], estimate=estimates[order[i]], mixture=mix) for i in range(2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voices", action="append", required=True, type=Path, help="folder of talker folders")
    ap.add_argument("-n", "--name", action="append", help="model (default: demixer-2spk)")
    ap.add_argument("--pairs", type=int, default=40, help="pairs per group (same, cross)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--f0-split", type=float, default=165.0, help="Hz between the lower and higher voice groups")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    import torch

    from demixer.separation import Separator

    torch.set_num_threads(args.threads)
    talkers = load_talkers(args.voices)
    f0 = {t: median_f0(np.concatenate(clips)[: 60 * RATE], RATE) for t, clips in talkers.items()}
    group = {t: "low" if f < args.f0_split else "high" for t, f in f0.items() if np.isfinite(f)}
    print(f"{len(group)} talkers ({sum(g == 'low' for g in group.values())} low voices, "
          f"{sum(g == 'high' for g in group.values())} high; split at {args.f0_split:g} Hz):")  # fmt: skip
    for t in sorted(group, key=lambda t: f0[t]):
        print(f"  {t:<40} median F0 {f0[t]:6.1f} Hz  {group[t]}")
    rng = np.random.default_rng(args.seed)
    pairs = {"same": [], "cross": []}
    for a, b in itertools.combinations(sorted(group), 2):
        pairs["same" if group[a] == group[b] else "cross"].append((a, b))
    n = int(args.seconds * RATE)
    mixtures = {}
    for kind, candidates in pairs.items():
        chosen = [candidates[i] for i in rng.permutation(len(candidates))[: args.pairs]]
        mixtures[kind] = [
            (a, b, loudest_cut(talkers[a][rng.integers(len(talkers[a]))], n),
             loudest_cut(talkers[b][rng.integers(len(talkers[b]))], n))
            for a, b in chosen
        ]  # fmt: skip
    results: dict = {"talkers": {t: {"median_f0_hz": round(f0[t], 1), "group": group[t]} for t in group}, "models": {}}
    print(f"\n{'model':<34} {'pairs':<6} {'n':>4} {'mean SI-SDRi':>13} {'median':>8}")
    for name in args.name or ["demixer-2spk"]:
        sep = Separator(name, progress=False)
        results["models"][name] = {}
        for kind, items in mixtures.items():
            gains = [g for _, _, a, b in items for g in score(sep, a, b)]
            row = {
                "estimates": len(gains),
                "mean_si_sdri": float(np.mean(gains)),
                "median_si_sdri": float(np.median(gains)),
            }
            results["models"][name][kind] = row
            print(f"{name:<34} {kind:<6} {len(gains):>4} {row['mean_si_sdri']:>13.2f} {row['median_si_sdri']:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
