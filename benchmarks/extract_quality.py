"""Target-speaker extraction on held-out talkers: SI-SDRi by interferer and the target-confusion rate.

    python benchmarks/extract_quality.py --voices VOICES [-n demixer-extract | -n CHECKPOINT] [--mixtures 30]
        [--seconds 4 --seed 0 --json out.json]

Talkers no model here trained or was validated on (the demixer-extract run in docs/training-log.md): VCTK
p286, p240, p260 and Valentini p287 (../shared/data), and KLettres en_GB, tn and uk from ``VOICES`` (``demixer data join
/usr/share/klettres --out VOICES --seconds 8 --seed 0``). Talkers are put in a lower or higher voice group by
median F0 (165 Hz; no gender labels exist), as in ``speakers_by_gender.py``.

Each mixture is a target utterance (the loudest ``--seconds``) plus one interferer at a target-to-interferer
ratio drawn in -5..+10 dB: a talker of the same voice group, one of the other group, or real noise the models
never trained on (sms-tools rain and ocean). The enrolment is another utterance of the target (another stretch
of the same recording for talkers with one file), 4 s. At 16 kHz.

Compared on the same mixtures:
- the extractor (``-n``), enrolled with the clip;
- ``demixer-2spk`` + the output whose embedding (the extractor's own speaker encoder) is closest to the
  enrolment's: no new model needed (talker interferers only);
- ``demixer-denoise``'s speech: no enrolment at all.

Reported per interferer type: SI-SDRi mean and median of the target estimate, and the confusion rate, the share of
talker mixtures where the estimate is closer to the interferer than to the target (SI-SDR against the interferer
above SI-SDR against the target).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared" / "data"
RATE = 16000

from speakers_by_gender import load_talkers, loudest_cut, median_f0  # noqa: E402


def held_out_talkers(voices: Path) -> dict[str, list[np.ndarray]]:
    talkers: dict[str, list[np.ndarray]] = {}
    for path in sorted((SHARED / "speech/vctk").iterdir()) + sorted((SHARED / "speech/vctk_rtvc").iterdir()):
        x, sr = sf.read(path, dtype="float32", always_2d=True)
        talkers[path.stem.split("_")[0]] = [soxr.resample(x.mean(axis=1), sr, RATE).astype(np.float32)]
    talkers["p287"] = load_talkers([SHARED / "denoising_pairs/valentini_p287/clean"], RATE)["clean"]
    talkers.update(load_talkers([voices / v for v in ("en_GB", "tn", "uk")], RATE))
    return talkers


def split(clips: list[np.ndarray], n: int, enrol: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A target cut and an enrolment clip from different utterances (or different stretches of one)."""
    if len(clips) > 1:
        i, j = rng.choice(len(clips), 2, replace=False)
        return loudest_cut(clips[i], n), loudest_cut(clips[j], enrol)
    x = clips[0]
    half = x.size // 2
    return loudest_cut(x[:half], n), loudest_cut(x[half:], enrol)


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    from demixer.evaluation.metrics import si_sdr as metric

    return metric(reference=ref, estimate=est)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices", type=Path, required=True)
    ap.add_argument("-n", "--name", default="demixer-extract", help="the target-speaker model")
    ap.add_argument("--mixtures", type=int, default=30, help="per interferer type")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--f0-split", type=float, default=165.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from demixer.separation import Separator

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    talkers = held_out_talkers(args.voices)
    f0 = {t: median_f0(np.concatenate(c)[: 60 * RATE], RATE) for t, c in talkers.items()}
    group = {t: "low" if f < args.f0_split else "high" for t, f in f0.items() if np.isfinite(f)}
    print("talkers:", ", ".join(f"{t} {f0[t]:.0f} Hz ({group[t]})" for t in sorted(group, key=f0.get)))
    noises = [sf.read(SHARED / f"noise/sms_tools/{n}.flac", dtype="float32", always_2d=True) for n in ("rain", "ocean")]
    noises = [soxr.resample(x.mean(axis=1), sr, RATE).astype(np.float32) for x, sr in noises]
    n, enrol = int(args.seconds * RATE), 4 * RATE
    pairs: dict[str, list[tuple[str, str]]] = {"same": [], "other": []}
    for a, b in itertools.permutations(sorted(group), 2):
        pairs["same" if group[a] == group[b] else "other"].append((a, b))
    cases: dict[str, list[dict[str, Any]]] = {"same": [], "other": [], "noise": []}
    for kind in cases:
        for _ in range(args.mixtures):
            if kind == "noise":
                target = sorted(group)[int(rng.integers(len(group)))]
                noise = noises[int(rng.integers(len(noises)))]
                start = int(rng.integers(0, noise.size - n))
                other = noise[start : start + n] / (np.sqrt(np.mean(noise[start : start + n] ** 2)) + 1e-9)
                talker = None
            else:
                target, talker = pairs[kind][int(rng.integers(len(pairs[kind])))]
                other = loudest_cut(talkers[talker][int(rng.integers(len(talkers[talker])))], n)
            clip, enrolment = split(talkers[target], n, enrol, rng)
            ratio = rng.uniform(-5.0, 10.0)
            ref, interferer = 0.1 * clip, 0.1 * other * 10 ** (-ratio / 20)
            cases[kind].append(
                {
                    "ref": ref,
                    "interferer": interferer,
                    "mix": ref + interferer,
                    "enrol": 0.1 * enrolment,
                    "talker": talker,
                }
            )

    from demixer.models.registry import load_for_inference

    model: Any = load_for_inference(args.name)
    model.enroll(cases["same"][0]["enrol"], RATE)  # re-enrolled for every mixture below
    extractor = Separator(model=model, name=args.name, progress=False)
    two = Separator("demixer-2spk", progress=False)
    denoise = Separator("demixer-denoise", progress=False)

    @torch.no_grad()
    def embedding(x: np.ndarray) -> torch.Tensor:
        return model.voice(model.embed(torch.from_numpy(x)[None, None].float()))[0]

    rows: dict[str, dict[str, Any]] = {}
    for kind, items in cases.items():
        scores: dict[str, list[float]] = {"extractor": [], "2spk+pick": [], "denoiser": []}
        confused: dict[str, list[bool]] = {"extractor": [], "2spk+pick": []}
        for item in items:
            mix = item["mix"]
            model.enroll(item["enrol"], RATE)
            target = extractor.separate_tensor(torch.from_numpy(mix)[None], RATE)["target"].numpy()[0]
            estimates = {"extractor": target}
            speech = denoise.separate_tensor(torch.from_numpy(mix)[None], RATE)["speech"].numpy()[0]
            estimates["denoiser"] = speech
            if item["talker"] is not None:
                outs = two.separate_tensor(torch.from_numpy(mix)[None], RATE)
                e = embedding(item["enrol"])
                best = max(two.sources, key=lambda s: float(embedding(outs[s].numpy()[0]) @ e))
                estimates["2spk+pick"] = outs[best].numpy()[0]
            base = si_sdr(item["ref"], mix)
            for name, est in estimates.items():
                scores[name].append(si_sdr(item["ref"], est) - base)
                if item["talker"] is not None and name in confused:
                    confused[name].append(si_sdr(item["interferer"], est) > si_sdr(item["ref"], est))
        rows[kind] = {
            name: {
                "mean_si_sdri": float(np.mean(v)),
                "median_si_sdri": float(np.median(v)),
                "n": len(v),
                **({"confusion_rate": float(np.mean(confused[name]))} if confused.get(name) else {}),
            }
            for name, v in scores.items()
            if v
        }
    print(
        f"\nSI-SDRi (dB) of the target, {args.mixtures} mixtures per interferer type, target-to-interferer -5..+10 dB"
    )
    print(f"{'interferer':<22} {'model':<12} {'mean':>7} {'median':>7} {'confusion':>10}")
    labels = {"same": "talker, same group", "other": "talker, other group", "noise": "noise (rain, ocean)"}
    for kind, per_model in rows.items():
        for name, r in per_model.items():
            conf = f"{100 * r['confusion_rate']:.0f} %" if "confusion_rate" in r else "-"
            print(f"{labels[kind]:<22} {name:<12} {r['mean_si_sdri']:7.2f} {r['median_si_sdri']:7.2f} {conf:>10}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.name, "f0": f0, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
