"""How far chunked separation strays from whole-file separation, per chunk overlap: the seam error that sets a
model's default overlap when its reach is longer than a chunk's edge (attention, global normalisation).

    python benchmarks/chunk_seams.py [--arch demixer-2spk,sepformer,convtasnet] [--seconds 40] [--overlaps 0.1,0.2,0.3]

For each model, the engine separates ``--seconds`` of two real talkers (8 kHz) in chunks of its default segment
at each overlap, and the output is compared with one forward pass over the whole recording: SNR in dB of the
whole-file output against the difference (higher: closer). ``demixer-2spk`` runs its shipped weights; SepFormer and
Asteroid's Conv-TasNet run their published configurations with random weights (no published weights can be
downloaded here), so their numbers show how much the chunk edges reach into the output, not a quality cost.
Real time: RTF of each chunked run.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))


def model_for(arch: str) -> torch.nn.Module:
    if arch in ("sepformer", "convtasnet"):
        from published_speed import ours, reference, to_ours

        model = ours(arch, None)
        model.load_state_dict(to_ours(arch, reference(arch, None).state_dict()))
        return model.eval()
    from demixer.models.registry import load_model

    return load_model(arch).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="demixer-2spk,sepformer,convtasnet")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--overlaps", default="0.1,0.2,0.3")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    from published_speed import two_talkers

    from demixer.separation import Separator

    mix = torch.from_numpy(two_talkers(8000, args.seconds))[None]
    print(f"{'model':<14} {'segment':>8} {'overlap':>8} {'SNR vs whole':>13} {'RTF':>6}")
    for arch in args.arch.split(","):
        model = model_for(arch)
        with torch.inference_mode():
            whole = model(mix[None])[0].numpy()  # [S, 1, T]
        for overlap in (float(o) for o in args.overlaps.split(",")):
            start = time.perf_counter()
            stems = Separator(model=model, overlap=overlap).separate_tensor(mix, 8000)
            rtf = (time.perf_counter() - start) / args.seconds
            chunked = np.stack([stems[s].numpy() for s in model.sources])
            # speakers may come out in another order than the whole-file pass: compare with the best order
            snr = max(
                10 * np.log10(np.sum(whole**2) / max(np.sum((whole - chunked[list(p)]) ** 2), 1e-20))
                for p in ([0, 1], [1, 0])
            )
            print(f"{arch:<14} {model.default_segment:>7.0f}s {overlap:>8.2f} {snr:>12.1f}  {rtf:>6.3f}")


if __name__ == "__main__":
    main()
