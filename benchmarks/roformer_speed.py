"""BS-/Mel-RoFormer: demixer's engine vs the reference `bs-roformer` 0.3.10 model run the way the
community runs it (Music-Source-Separation-Training's overlap-add demix), same random weights,
same stereo input; time (RTF) and peak RSS side by side, each side in a fresh process.

    python benchmarks/roformer_speed.py --arch bs [--seconds 60 --depth 12]     # viperx-317 config
    python benchmarks/roformer_speed.py --arch mel [--seconds 60 --depth 6]     # Kim vocals config

`--depth` below the published value gives a quicker, smaller model (the per-layer cost is the same).
Equality of outputs is checked on one 8 s chunk (both models on the same input); the full-track
outputs differ by design where the two overlap-add schemes weigh chunk edges differently.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VIPERX_BANDS = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
CONFIGS = {
    "bs": dict(dim=512, depth=12, time_transformer_depth=1, freq_transformer_depth=1, dim_head=64, heads=8),
    "mel": dict(dim=384, depth=6, time_transformer_depth=1, freq_transformer_depth=1, dim_head=64, heads=8),
}


def build(arch: str, depth: int, side: str, weights: str | None = None) -> torch.nn.Module:
    """The reference model (random weights, seed 0) or ours; ``weights``: a safetensors file to load."""
    torch.manual_seed(0)
    cfg = dict(CONFIGS[arch], depth=depth)
    if side == "ours" and weights:
        from safetensors.torch import load_file

        from demixer.models.roformer import BSRoformer, MelRoformer, RoformerConfig

        kw = dict(cfg, hop_length=441, mask_estimator_depth=2)
        ours = BSRoformer(RoformerConfig(**kw, freqs_per_bands=VIPERX_BANDS)) if arch == "bs" else MelRoformer(RoformerConfig(**kw, num_bands=60))
        ours.load_state_dict(load_file(weights), assign=True)  # no second copy of the weights
        return ours.eval()
    import bs_roformer

    if arch == "bs":
        ref = bs_roformer.BSRoformer(**cfg, stereo=True, num_stems=1, freqs_per_bands=VIPERX_BANDS, stft_hop_length=441,
                                     mask_estimator_depth=2)
    else:
        ref = bs_roformer.MelBandRoformer(**cfg, stereo=True, num_stems=1, num_bands=60, stft_hop_length=441,
                                          mask_estimator_depth=2, attn_dropout=0.0, ff_dropout=0.0)
    if side == "ref":
        if weights:
            from safetensors.torch import load_file

            ref.load_state_dict(load_file(weights), assign=True)
        return ref.eval()
    from demixer.models.roformer import BSRoformer, MelRoformer, RoformerConfig

    kw = dict(cfg, hop_length=441, mask_estimator_depth=2)
    ours = BSRoformer(RoformerConfig(**kw, freqs_per_bands=VIPERX_BANDS)) if arch == "bs" else MelRoformer(RoformerConfig(**kw, num_bands=60))
    ours.load_state_dict(ref.state_dict())
    return ours.eval()


def reference_demix(model: torch.nn.Module, mix: torch.Tensor, chunk: int = 352800, overlap: int = 2) -> torch.Tensor:
    """Music-Source-Separation-Training's demix: chunks of `chunk` samples every chunk/overlap, linear fades."""
    step = chunk // overlap
    fade = chunk // 10
    border = chunk - step
    length = mix.shape[-1]
    mix = torch.nn.functional.pad(mix[None], (border, border), mode="reflect")[0] if length > 2 * border else mix
    window = torch.ones(chunk)
    window[:fade] = torch.linspace(0, 1, fade)
    window[-fade:] = torch.linspace(1, 0, fade)
    result = torch.zeros_like(mix)
    counter = torch.zeros(mix.shape[-1])
    with torch.no_grad():
        for i in range(0, mix.shape[-1], step):
            part = mix[:, i:i + chunk]
            n = part.shape[-1]
            if n < chunk:
                part = torch.nn.functional.pad(part[None], (0, chunk - n), mode="reflect" if n > chunk // 2 + 1 else "constant")[0]
            out = model(part[None])[0][..., :n]
            w = window[:n].clone()
            if i == 0:
                w[:fade] = 1
            if i + step >= mix.shape[-1]:
                w[-fade:] = 1
            result[:, i:i + n] += out * w
            counter[i:i + n] += w
    est = result / counter.clamp(min=1e-8)
    return est[:, border:border + length] if length > 2 * border else est


def run_side(args) -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    model = build(args.arch, args.depth, args.side, args.weights)
    mix = torch.from_numpy(np.random.default_rng(1).standard_normal((2, int(args.seconds * 44100))).astype(np.float32) * 0.1)
    start = time.perf_counter()
    if args.side == "ref":
        reference_demix(model, mix)
    else:
        from demixer.separation import Separator

        Separator(model=model, segment=8.0, overlap=0.25).separate_tensor(mix, 44100)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rtf": seconds / args.seconds, "peak_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=("bs", "mel"), default="bs")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--side", choices=("ours", "ref"))
    ap.add_argument("--weights", help="safetensors file with the shared weights (set by the parent run)")
    args = ap.parse_args()
    args.depth = args.depth or CONFIGS[args.arch]["depth"]
    if args.side:
        run_side(args)
        return
    warnings.simplefilter("ignore")
    ref, ours = build(args.arch, args.depth, "ref"), build(args.arch, args.depth, "ours")
    chunk = torch.randn(1, 2, 352800) * 0.1
    with torch.no_grad():
        diff = float((ref(chunk) - ours(chunk)[:, 0]).abs().max())
    import tempfile

    from safetensors.torch import save_file

    weights = Path(tempfile.mkdtemp()) / "weights.safetensors"
    save_file({k: v.clone().contiguous() for k, v in ref.state_dict().items()}, str(weights))
    del ref, ours
    print(f"{args.arch}-roformer, depth {args.depth}, {args.seconds:.0f} s stereo, {args.threads} threads; "
          f"one 8 s chunk, max |ours - reference| = {diff:.2e}")
    results = {}
    for side in ("ref", "ours"):
        cmd = [sys.executable, __file__, "--arch", args.arch, "--seconds", str(args.seconds), "--depth", str(args.depth),
               "--threads", str(args.threads), "--side", side, "--weights", str(weights)]
        results[side] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        print(f"  {side:<4} RTF {results[side]['rtf']:.3f}  peak RSS {results[side]['peak_mb']:.0f} MB")
    print(f"  speed-up {results['ref']['seconds'] / results['ours']['seconds']:.2f}x, "
          f"memory ratio {results['ours']['peak_mb'] / results['ref']['peak_mb']:.2f}")


if __name__ == "__main__":
    main()
