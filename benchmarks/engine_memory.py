"""Peak memory (RSS) and real-time factor of the streaming engine on long stereo files.

Each run separates a 44.1 kHz stereo file of 1, 10 and 60 minutes (generated here: noise
with a drum-like envelope, written as FLAC) with a mask model, through the real CLI in a
fresh process, and reads that process's peak RSS. Goal: 60 minutes within 1.5 GB and less
than 300 MB above the 1-minute run.

    .venv/bin/python benchmarks/engine_memory.py [--minutes 1 10 60] [-n tiny-random]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def make_input(path: Path, minutes: float, sr: int = 44100) -> None:
    rng = np.random.default_rng(0)
    block = 60 * sr
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=2, subtype="PCM_16", format="FLAC") as f:
        for start in range(0, int(minutes * 60 * sr), block):
            n = min(block, int(minutes * 60 * sr) - start)
            t = (start + np.arange(n)) / sr
            env = np.exp(-((t * 2) % 1) * 8)
            x = 0.2 * rng.standard_normal((n, 2)) * env[:, None] + 0.2 * np.sin(2 * np.pi * 220 * t)[:, None]
            f.write(x.astype(np.float32))


def run(path: Path, out: Path, model: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one CLI run in a child process."""
    t0 = time.perf_counter()
    code = (
        "import resource, sys; from demixer.cli.main import main; rc = main(sys.argv[1:]); "
        "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "-q",
            "separate",
            "-n",
            model,
            "-o",
            str(out),
            "--overwrite",
            "--no-progress",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    kb = int(next(line.split()[1] for line in r.stderr.splitlines() if line.startswith("PEAK_RSS_KB")))
    return wall, kb / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    ap.add_argument("-n", "--name", default="tiny-random")
    ap.add_argument("--workdir", default=None, help="where inputs and outputs go (default: a temporary folder)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="demixer-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for minutes in args.minutes:
        path = work / f"input_{minutes:g}min.flac"
        if not path.exists():
            make_input(path, minutes)
        wall, rss = run(path, work / "out", args.name)
        rows.append((minutes, wall, wall / (minutes * 60), rss))
        print(
            f"{minutes:6g} min  wall {wall:8.1f} s  RTF {wall / (minutes * 60):.3f}  peak RSS {rss:7.0f} MB", flush=True
        )
    print(f"\nmodel {args.name}, {os.cpu_count()} cores")
    print("| input | wall (s) | RTF | peak RSS (MB) | vs first |")
    print("|---|---|---|---|---|")
    for m, wall, rtf, rss in rows:
        print(f"| {m:g} min stereo 44.1 kHz | {wall:.1f} | {rtf:.3f} | {rss:.0f} | {rss - rows[0][3]:+.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
