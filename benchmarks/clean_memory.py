"""``demixer clean`` on long recordings: peak memory must not grow with the length.

    python benchmarks/clean_memory.py [--minutes 10 60] [--rate 44100] [--threads 1] [--work DIR] [--dialogue-model M]

Each length gets a podcast-like file written block by block (never held in memory): real speech (VCTK,
LibriSpeech, CMU ARCTIC from ../shared/data, looped) with a real song under it at about -15 dB, mono. Each
file is cleaned by the real CLI in a fresh process (default chain: dialogue, denoise, loudness, limit) while
the peak resident memory of that process is sampled every 0.1 s. Prints per length: audio minutes, wall
time, RTF, peak RSS, output loudness and true peak, and the ratio of the longest run's peak to the shortest's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data"


def write_podcast(path: Path, minutes: float, rate: int) -> None:
    from demixer.audio import load_audio

    voices = [
        p for d in ("speech/vctk", "speech/librispeech", "speech/cmu_arctic") for p in sorted((SHARED / d).iterdir())
    ]
    speech = np.concatenate([load_audio(p, sample_rate=rate, mono=True)[0][0] for p in voices])
    music = load_audio(SHARED / "mixtures_only/librosa_vibe_ace_kevin_macleod_20s.flac", sample_rate=rate, mono=True)[
        0
    ][0]
    total = int(minutes * 60 * rate)
    block = 1 << 18
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for start in range(0, total, block):
            n = min(block, total - start)
            idx = np.arange(start, start + n)
            f.write(0.3 * speech[idx % len(speech)] + 0.05 * music[idx % len(music)])


def run(path: Path, out: Path, threads: int, extra: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "demixer", "-q", "clean", str(path), "-o", str(out), "--overwrite", *extra]
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"clean failed on {path}: {stderr.decode()[-2000:]}")
    report = json.loads((out / path.stem / "report.json").read_text())
    return {"seconds": time.perf_counter() - t0, "peak_mb": peak / 2**20, "report": report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    ap.add_argument("--rate", type=int, default=44100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dialogue-model", help="a dialogue model other than the task default")
    ap.add_argument("--work", type=Path, default=Path("/tmp/demixer-clean-memory"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for minutes in args.minutes:
        path = args.work / f"podcast_{minutes:g}min.wav"
        if not path.exists():
            write_podcast(path, minutes, args.rate)
        r = run(
            path,
            args.work / "out",
            args.threads,
            ["--dialogue-model", args.dialogue_model] if args.dialogue_model else [],
        )
        rtf = r["seconds"] / (minutes * 60)
        rep = r["report"]
        rows.append((minutes, r["peak_mb"]))
        print(
            f"{minutes:6.1f} min  wall {r['seconds']:7.1f} s  RTF {rtf:.3f}  peak RSS {r['peak_mb']:7.1f} MB  "
            f"out {rep['loudness_out_lufs']} LUFS, {rep['true_peak_out_dbtp']} dBTP",
            flush=True,
        )
    if len(rows) > 1:
        print(f"peak RSS, {rows[-1][0]:g} min / {rows[0][0]:g} min: {rows[-1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main()
