"""RTF and peak RSS of every model on this CPU: each model in a fresh process, separating
`--seconds` of noise at its own rate and channel count through the engine (`Separator`).

    python benchmarks/models_speed.py [--seconds 30 --threads 2 --calls 3]

RTF is the first call's (a fresh process: what one CLI run sees); with ``--calls N`` the median of
the later calls is printed too (a warm model: what a batch run or the service sees).

Architectures run at their default configs with random weights (speed does not depend on the
weights); the RoFormers at the published viperx-317 / Kim configs but `--roformer-depth` layers. The models the
package ships (`demixer-4stem`, ...) run by name, with their trained weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MODELS = {
    "hpss": None,
    "repet-sim": None,
    "center": None,
    "spectral-gate": None,
    "unet": ("unet", {}),
    "open-unmix": ("open_unmix", {}),
    "htdemucs": ("htdemucs", {}),
    "denoiser-16k": ("denoiser", {"sample_rate": 16000}),
    "denoiser-48k": ("denoiser", {"sample_rate": 48000}),
    "convtasnet-8k": ("convtasnet", {}),
    "extractor-8k": ("speaker_extractor", {}),
    "bs_roformer": (
        "bs_roformer",
        {"dim": 512, "heads": 8, "dim_head": 64, "hop_length": 441, "mask_estimator_depth": 2},
    ),
    "mel_roformer": (
        "mel_roformer",
        {"dim": 384, "heads": 8, "dim_head": 64, "hop_length": 441, "mask_estimator_depth": 2},
    ),
}


def _shipped() -> dict:
    from demixer.models.shipped import shipped_cards

    return {card.name: None for card in shipped_cards()}


MODELS.update(_shipped())


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(name: str, seconds: float, threads: int, roformer_depth: int, calls: int = 1) -> dict:
    import numpy as np
    import torch

    from demixer.models.checkpoint import build_model
    from demixer.models.registry import load_model
    from demixer.separation import Separator

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = MODELS[name]
    if spec is None:
        model = load_model(name)
    else:
        arch, cfg = spec
        if arch.endswith("roformer"):
            cfg = {**cfg, "depth": roformer_depth}
        model = build_model(arch, cfg).eval()
    channels = model.audio_channels or 2
    audio = (0.1 * np.random.default_rng(0).standard_normal((channels, int(seconds * model.sample_rate)))).astype(
        np.float32
    )
    if getattr(model, "needs_enrollment", False):  # target-speaker extraction: enrol a 3 s clip first
        model.enroll(audio[:, : 3 * model.sample_rate], model.sample_rate)
    sep = Separator(model=model)
    walls = []
    for _ in range(max(1, calls)):
        start = time.perf_counter()
        sep.separate_tensor(audio, model.sample_rate)
        walls.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    result = {
        "model": name,
        "rate": model.sample_rate,
        "params_m": round(params / 1e6, 2),
        "rtf": round(walls[0] / seconds, 4),
        "peak_mb": round(peak_mb()),
    }
    if len(walls) > 1:  # later calls: what a batch run or the service sees once the model is warm
        result["rtf_warm"] = round(float(np.median(walls[1:])) / seconds, 4)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--roformer-depth", type=int, default=1)
    ap.add_argument(
        "--calls", type=int, default=1, help="separations per model; RTF of the first and median of the rest"
    )
    ap.add_argument("--only")
    ap.add_argument("--models", help="comma-separated subset of the models (default: all)")
    ap.add_argument("--reference", default="demixer-4stem", help="the model the ratio column divides by")
    ap.add_argument(
        "--json", type=Path, help="also write the results here (scripts/ship_model.py --benchmark takes it)"
    )
    args = ap.parse_args()
    if args.only:
        print(json.dumps(one(args.only, args.seconds, args.threads, args.roformer_depth, args.calls)))
        return
    print(f"{args.seconds:.0f} s of audio per model, {args.threads} threads, RoFormers at depth {args.roformer_depth}")
    names = args.models.split(",") if args.models else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"unknown models: {', '.join(unknown)} (choose from {', '.join(MODELS)})")
    results = []
    for name in names:
        cmd = [
            sys.executable,
            __file__,
            "--only",
            name,
            "--seconds",
            str(args.seconds),
            "--threads",
            str(args.threads),
            "--roformer-depth",
            str(args.roformer_depth),
            "--calls",
            str(args.calls),
        ]
        results.append(
            json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        )
    ref = next((r["rtf"] for r in results if r["model"] == args.reference), None)
    print(
        f"{'model':<16} {'rate':>6} {'params':>8} {'RTF':>8} {'warm RTF':>9} "
        f"{'peak RSS':>9} {'RTF / ' + args.reference if ref else ''}"
    )
    for r in results:
        warm = f"{r['rtf_warm']:>9.4f}" if "rtf_warm" in r else f"{'-':>9}"
        ratio = f" {r['rtf'] / ref:>8.2f}x" if ref else ""
        print(
            f"{r['model']:<16} {r['rate']:>6} {r['params_m']:>7}M {r['rtf']:>8.4f} {warm} {r['peak_mb']:>7} MB{ratio}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "seconds": args.seconds,
                    "threads": args.threads,
                    "calls": args.calls,
                    "cpu": platform.processor() or platform.machine(),
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
