"""Streaming denoiser on one CPU thread: real-time factor of `StreamingDenoiser.process` fed 10 ms
blocks (the hearing-aid case), its algorithmic latency measured from an impulse, and its output
against the offline model.

    python benchmarks/denoiser_streaming.py [--seconds 20 --block-ms 10] [--model demixer-denoise]

Random weights at the default config (speed does not depend on the weights), a 16 and a 48 kHz model;
with --model, that model (e.g. the shipped 16 kHz one) at 16 kHz and natively at 48 kHz
(`Denoiser.at_input_rate`). Issue goal RTF <= 0.02.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from demixer.models.denoiser import Denoiser, DenoiserConfig, StreamingDenoiser  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--block-ms", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", help="a denoiser model name or checkpoint instead of random weights")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(
        f"{'rate':>6} {'RTF (median of ' + str(args.repeats) + ')':>20} "
        f"{'us/hop':>8} {'latency':>10} {'max |stream - offline|':>24}"
    )
    for sr in (16000, 48000):
        torch.manual_seed(0)
        if args.model:
            from demixer.models import load_model

            model = load_model(args.model).at_input_rate(sr).eval()
        else:
            model = Denoiser(DenoiserConfig(sample_rate=sr)).eval()
        x = (0.1 * np.random.default_rng(0).standard_normal(int(args.seconds * sr))).astype(np.float32)
        block = int(sr * args.block_ms / 1000)
        times = []
        for _ in range(args.repeats):
            stream = StreamingDenoiser(model)
            t0 = time.perf_counter()
            out = [stream.process(x[i : i + block]) for i in range(0, len(x), block)]
            out.append(stream.flush())
            times.append(time.perf_counter() - t0)
        y = np.concatenate(out)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)[None, None])[0, 0, 0].numpy()
        lat = model.latency
        err = float(np.abs(y[lat : lat + len(x)] - ref).max())
        impulse = np.zeros(sr // 2, np.float32)
        impulse[sr // 10] = 1.0
        stream = StreamingDenoiser(model)
        resp = np.concatenate([stream.process(impulse), stream.flush()])
        measured = int(np.argmax(np.abs(resp))) - sr // 10
        rtf = float(np.median(times)) / args.seconds
        hops = len(x) / model.hop
        print(
            f"{sr:>6} {rtf:>20.4f} {1e6 * float(np.median(times)) / hops:>8.0f} "
            f"{1000 * measured / sr:>8.1f}ms {err:>24.2e}"
        )


if __name__ == "__main__":
    main()
