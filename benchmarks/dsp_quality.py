"""Quality of the training-free separators on real recordings from ../shared/data.

For each method and track: SDR of the method's target stem(s) against the true stem,
next to the mixture-as-estimate baseline (what doing nothing scores). Music: 30 s
excerpts from the middle of each music/train song (CC0 stems) and the music/valid excerpt;
speech: the Valentini noisy/clean pairs, and LibriSpeech/ARCTIC speech mixed with real noise.

    .venv/bin/python benchmarks/dsp_quality.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from demixer import Separator
from demixer.audio import load_audio, resample
from demixer.evaluation import sdr, si_sdr

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def music_tracks(seconds: float):
    for folder in sorted((DATA / "music" / "train").iterdir()) + sorted((DATA / "music" / "valid").iterdir()):
        stems = {}
        for s in ("vocals", "drums", "bass", "other"):
            f = next(folder.glob(f"{s}.*"))
            stems[s] = load_audio(f)[0]
        T = stems["vocals"].shape[1]
        n = min(T, int(seconds * 44100))
        a = (T - n) // 2
        yield folder.name, {s: y[:, a : a + n] for s, y in stems.items()}


def speech_pairs():
    pairs = DATA / "denoising_pairs" / "valentini_p287"
    for noisy in sorted((pairs / "noisy").glob("*.flac")):
        clean = load_audio(pairs / "clean" / noisy.name)[0]
        yield f"valentini/{noisy.stem}", clean, load_audio(noisy)[0] - clean
    rng = np.random.default_rng(0)
    noises = [
        resample(load_audio(p)[0][:1], 16000 if "speech_commands" in str(p) else 44100, 16000)
        for p in sorted((DATA / "noise").rglob("*.flac"))
    ]
    speech = (
        sorted((DATA / "speech" / "librispeech").glob("*.flac"))
        + sorted((DATA / "speech" / "cmu_arctic").glob("*.flac"))[:2]
    )
    for i, p in enumerate(speech):
        clean, sr = load_audio(p)
        clean = resample(clean[:1], sr, 16000)
        noise = noises[i % len(noises)]
        start = rng.integers(0, max(1, noise.shape[1] - clean.shape[1]))
        nz = np.resize(noise[:, start:], clean.shape)
        snr = [0, 5][i % 2]
        nz = nz * np.sqrt((clean**2).mean() / ((nz**2).mean() + 1e-12) / 10 ** (snr / 10))
        yield f"{p.stem}+noise{i % len(noises)}@{snr}dB", clean, nz


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    music = {"hpss": ("drums",), "repet-sim": ("vocals",), "center": ("vocals",)}
    rows = []
    for track, stems in music_tracks(args.seconds):
        mix = sum(stems.values())
        for name, targets in music.items():
            out = Separator(name).separate_tensor(mix, 44100)
            for t in targets:
                if np.abs(stems[t]).max() == 0:
                    continue
                ref = stems[t]
                rows.append(
                    (name, t, track, sdr(reference=ref, estimate=out[t].numpy()), sdr(reference=ref, estimate=mix))
                )
                other = "other" if name == "hpss" else "no_vocals"
                ref_o = mix - ref
                rows.append(
                    (
                        name,
                        other,
                        track,
                        sdr(reference=ref_o, estimate=out[other].numpy()),
                        sdr(reference=ref_o, estimate=mix),
                    )
                )
    gate = Separator("spectral-gate")
    for label, clean, noise in speech_pairs():
        noisy = clean + noise
        est = gate.separate_tensor(noisy, 16000)["speech"].numpy()
        rows.append(
            (
                "spectral-gate",
                "speech(si-sdr)",
                label,
                si_sdr(reference=clean, estimate=est),
                si_sdr(reference=clean, estimate=noisy),
            )
        )
    print(f"{'method':<14} {'stem':<15} {'track':<44} {'SDR':>7} {'mix':>7} {'gain':>7}")
    for r in rows:
        print(f"{r[0]:<14} {r[1]:<15} {r[2]:<44} {r[3]:7.2f} {r[4]:7.2f} {r[3] - r[4]:+7.2f}")
    print("\nmean over tracks (dB):")
    keys = sorted({(r[0], r[1]) for r in rows})
    for k in keys:
        sel = [r for r in rows if (r[0], r[1]) == k]
        print(
            f"{k[0]:<14} {k[1]:<15} SDR {np.mean([r[3] for r in sel]):6.2f} "
            f" mixture {np.mean([r[4] for r in sel]):6.2f}  "
            f"gain {np.mean([r[3] - r[4] for r in sel]):+6.2f}  "
            f"(n={len(sel)}, gain>0 on {sum(r[3] > r[4] for r in sel)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
