"""Batch throughput (seconds of audio separated per wall-clock second) for the local and Ray engines
with 1 and 2 workers, side by side on the same files in one run.

Inputs: `--files` excerpts of `--seconds` s cut from the real songs in ../shared/data/music/train
(stereo 44.1 kHz WAV written to a temporary folder). Every configuration starts from an empty output
folder; the Ray runs start their own local cluster (its start-up is part of the measured time, as in
real use), the local runs their own process pool.

    python benchmarks/batch_throughput.py [--model hpss --files 8 --seconds 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from demixer.batch import run_batch  # noqa: E402
from demixer.data import find_tracks  # noqa: E402
from demixer.options import SeparationOptions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "music" / "train"))
    ap.add_argument("--model", default="hpss")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--engines", default="local,ray")
    args = ap.parse_args()
    tracks = find_tracks(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for k in range(args.files):
            t = tracks[k % len(tracks)]
            start = int((20 + 25 * (k // len(tracks))) * 44100)
            audio = sum(t.read(s, start, int(args.seconds * 44100), 44100, 2) for s in t.stems)
            sf.write(inputs / f"item{k:03d}.wav", audio.T, 44100)
        print(f"{args.files} files x {args.seconds:.0f} s, model {args.model}")
        results = {}
        for engine in args.engines.split(","):
            for workers in (1, 2):
                out = Path(tmp) / f"out-{engine}-{workers}"
                t0 = time.perf_counter()
                summary = run_batch(
                    [str(inputs)],
                    SeparationOptions(name=args.model, out=str(out)),
                    engine=engine,
                    workers=workers,
                    progress=False,
                )
                wall = time.perf_counter() - t0
                assert summary.ok == args.files, summary.failures
                results[(engine, workers)] = summary.audio_seconds / wall
                print(
                    f"  {engine:<5} workers {workers}: {summary.audio_seconds:.0f} s of audio in {wall:.1f} s -> "
                    f"{results[(engine, workers)]:.2f} audio s per s"
                )
        for engine in args.engines.split(","):
            print(f"  {engine}: 2 workers / 1 worker = {results[(engine, 2)] / results[(engine, 1)]:.2f}x")
        if "local" in args.engines and "ray" in args.engines:
            for w in (1, 2):
                print(f"  ray / local with {w} worker(s) = {results[('ray', w)] / results[('local', w)]:.2f}x")


if __name__ == "__main__":
    main()
