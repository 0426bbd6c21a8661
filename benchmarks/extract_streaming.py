"""Hearing-aid mode on one CPU thread: the causal target-speaker extractor fed 10 ms blocks, beside the streaming
denoiser; real-time factor, algorithmic latency measured from an impulse, and the stream against offline output.

    python benchmarks/extract_streaming.py [--model demixer-extract | CHECKPOINT] [--seconds 20 --block-ms 10]

Rows: the extractor (``--model``, the shipped demixer-extract by default; ``model.streaming()``), the
Conv-TasNet extractor with random weights at the size of the first extractor run (``SIZE`` below, the run of
2026-12-07 in docs/training-log.md; speed does not depend on the weights), and the streaming denoiser. Each
extractor is enrolled once with 4 s of noise (the embedding is computed once per enrolment; its cost is printed
apart). Issue 29's goals: latency <= 20 ms, RTF <= 0.1 at 16 kHz on one thread.
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
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

RATE = 16000
#: the causal extractor's size (2 ms encoder frames, 14 TCN blocks of 64/128 channels, 128-d speaker embedding)
SIZE = dict(
    sample_rate=RATE,
    causal=True,
    filters=128,
    kernel=32,
    bottleneck=64,
    hidden=128,
    conv_kernel=3,
    blocks=7,
    repeats=2,
    speaker_dim=128,
    encoder_channels=128,
    encoder_layers=4,
    n_mels=40,
    min_enrollment=2.0,
)


def run(make_stream, x: np.ndarray, block: int, repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], []
    for _ in range(repeats):
        stream = make_stream()
        t0 = time.perf_counter()
        out = [stream.process(x[i : i + block]) for i in range(0, len(x), block)]
        out.append(stream.flush())
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), np.concatenate(out)


def impulse_latency(make_stream) -> float:
    """Where the response to an impulse peaks in the stream, after the impulse (ms)."""
    impulse = np.zeros(RATE // 2, np.float32)
    impulse[RATE // 10] = 1.0
    stream = make_stream()
    resp = np.concatenate(
        [stream.process(impulse[i : i + 160]) for i in range(0, impulse.size, 160)] + [stream.flush()]
    )
    return 1000 * (int(np.argmax(np.abs(resp))) - RATE // 10) / RATE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demixer-extract", help="extractor name or checkpoint")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--block-ms", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from demixer.models import load_model
    from demixer.models.checkpoint import build_model
    from demixer.models.denoiser import StreamingDenoiser

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    extractors = {
        args.model: load_model(args.model).eval(),
        "Conv-TasNet extractor": build_model("speaker_extractor", SIZE).eval(),
    }
    enrol_ms = {}
    for name, model in extractors.items():
        t0 = time.perf_counter()
        model.enroll((0.1 * rng.standard_normal(4 * RATE)).astype(np.float32), RATE)
        enrol_ms[name] = 1000 * (time.perf_counter() - t0)
    denoiser = load_model("demixer-denoise").eval()
    x = (0.1 * rng.standard_normal(int(args.seconds * RATE))).astype(np.float32)
    block = int(RATE * args.block_ms / 1000)
    print(f"{'model':<28} {'RTF':>7} {'us/10ms':>8} {'latency':>9} {'max |stream - offline|':>23}")
    rows = [(Path(name).stem, model, model.streaming) for name, model in extractors.items()]
    rows.append(("demixer-denoise", denoiser, lambda: StreamingDenoiser(denoiser, atten_lim=float("inf"))))
    for label, model, make in rows:
        seconds, y = run(make, x, block, args.repeats)
        lat = make().latency if hasattr(make(), "latency") else model.latency
        with torch.no_grad():
            ref = model(torch.from_numpy(x)[None, None])[0, 0, 0].numpy()
        err = float(np.abs(y[lat : lat + len(x)] - ref).max())
        print(
            f"{label[-28:]:<28} {seconds / args.seconds:7.4f} {1e6 * seconds / (len(x) / 160):8.0f} "
            f"{impulse_latency(make):7.2f}ms {err:23.2e}"
        )
    for name, ms in enrol_ms.items():
        print(f"enrolment of {name} (4 s clip, once): {ms:.0f} ms")


if __name__ == "__main__":
    main()
