"""Peak memory of `demixer serve` per job, against the admission estimate (`--max-memory-mb`).

Starts the real server on loopback with its default limits (or the flags given), uploads generated
recordings one job at a time, samples the server's RSS every 50 ms, and prints per upload: its shape,
the status code, the estimate (`serving.settings.job_memory_mb`) and the measured peak above the
server's RSS before the job. The worst case of issue 33 is an 8-channel 192 kHz upload: the separation
and the analysis stream, so its memory stops growing past the quality signals' 60 s excerpts (compare
`--wide-seconds` 90 with the 20 s of `tests/test_serving.py`); case 2 runs it at the duration limit
(long: 1200 s of 8 x 192 kHz audio).

    python benchmarks/service_memory.py --cases 0 1          # default limits (4096 MB, 1200 s)
    python benchmarks/service_memory.py --max-memory-mb 2048 --json out.json
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import soundfile as sf

from demixer.serving.settings import ServerSettings, job_memory_mb, longest_job_seconds


def write_upload(path: Path, seconds: float, rate: int, channels: int, level: float = 0.2) -> Path:
    """Quiet tones and a little noise, written block by block as 16-bit FLAC (compresses like real music);
    ``level=0``: digital silence, which FLAC shrinks so far that the upload limit does not stop a long
    8-channel file before the memory check sees it (the issue's 1200 s file was 201 MB)."""
    rng = np.random.default_rng(0)
    block = rate * 5
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16", format="FLAC") as f:
        for lo in range(0, int(seconds * rate), block):
            n = min(block, int(seconds * rate) - lo)
            t = (lo + np.arange(n)) / rate
            tones = np.stack([level * np.sin(2 * np.pi * (110 * (c + 1)) * t) for c in range(channels)], axis=1)
            f.write((tones + level / 60 * rng.standard_normal((n, channels))).astype(np.float32))
    return path


class Sampler(threading.Thread):
    """Peak RSS of a process, sampled every ``every`` seconds while running."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.proc, self.every, self.peak, self.running = psutil.Process(pid), every, 0, True

    def run(self) -> None:
        while self.running:
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.every)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-memory-mb", type=float, default=ServerSettings.max_memory_mb)
    p.add_argument("--max-duration", type=float, default=ServerSettings.max_duration_s)
    p.add_argument("--max-upload-mb", type=float, default=ServerSettings.max_upload_mb)
    p.add_argument("--stereo-seconds", type=float, default=300.0, help="length of the stereo 44.1 kHz upload")
    p.add_argument("--wide-seconds", type=float, default=90.0, help="length of the 8-channel 192 kHz upload")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--cases", type=int, nargs="*", help="run only these cases (0, 1, 2)")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="demixer-service-memory-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(work / "server.log", "wb")
    cmd = [
        sys.executable,
        "-m",
        "demixer",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(work / "data"),
        "--max-memory-mb",
        str(args.max_memory_mb),
        "--max-duration",
        str(args.max_duration),
        "--max-upload-mb",
        str(args.max_upload_mb),
    ]
    server = subprocess.Popen(cmd, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        stems = 4  # demixer-4stem, the music task's default
        longest = min(args.wide_seconds, longest_job_seconds(args.max_memory_mb, 192000, 8, stems))
        cases = [
            ("stereo 44.1 kHz", args.stereo_seconds, 44100, 2),
            ("8 ch 192 kHz", float(int(longest)), 192000, 8),
            ("8 ch 192 kHz, at the duration limit", args.max_duration, 192000, 8),
        ]
        cases = [c for i, c in enumerate(cases) if args.cases is None or i in args.cases]
        rows = []
        print(
            f"server RSS at start {psutil.Process(server.pid).memory_info().rss / 2**20:.0f} MiB; "
            f"--max-memory-mb {args.max_memory_mb:g}, --max-duration {args.max_duration:g}"
        )
        header = ("upload", "seconds", "MB file", "code", "estimate MiB", "peak +MiB", "job s")
        print(f"{header[0]:<38} " + " ".join(f"{h:>{w}}" for h, w in zip(header[1:], (8, 8, 5, 13, 10, 7))))
        for label, seconds, rate, channels in cases:
            path = work / f"{channels}ch-{rate}-{seconds:.0f}s.flac"
            write_upload(path, seconds, rate, channels, level=0.2 if seconds * rate * channels < 1e9 else 0.0)
            before = psutil.Process(server.pid).memory_info().rss
            sampler = Sampler(server.pid)
            sampler.start()
            t0 = time.time()
            with open(path, "rb") as f:
                r = httpx.post(f"{url}/jobs", files={"file": (path.name, f)}, timeout=600)
            state = None
            if r.status_code == 202:
                job = r.json()["id"]
                while True:
                    state = httpx.get(f"{url}/jobs/{job}", timeout=30).json()
                    if state["state"] in ("done", "failed"):
                        break
                    time.sleep(0.5)
                httpx.delete(f"{url}/jobs/{job}", timeout=30)
            sampler.running = False
            sampler.join()
            estimate = job_memory_mb(seconds, rate, channels, stems)
            row = {
                "upload": label,
                "seconds": seconds,
                "rate": rate,
                "channels": channels,
                "file_mb": round(path.stat().st_size / 1e6, 1),
                "status": r.status_code,
                "state": state["state"] if state else None,
                "estimate_mib": round(estimate),
                "peak_above_start_mib": round((sampler.peak - before) / 2**20),
                "job_s": round(time.time() - t0, 1),
                "detail": None if r.status_code == 202 else r.json().get("detail"),
            }
            rows.append(row)
            print(
                f"{label:<38} {seconds:>8.0f} {row['file_mb']:>8} {r.status_code:>5} {estimate:>13.0f} "
                f"{row['peak_above_start_mib']:>10} {row['job_s']:>7}"
            )
            if row["detail"]:
                print(f"    {row['detail']}")
            path.unlink()
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
