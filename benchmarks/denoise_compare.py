"""Speech denoisers side by side on real noisy speech: demixer's own models, DeepFilterNet3,
RNNoise (the `pyrnnoise` wheel's library) and noisereduce, with the noisy input as the floor.

    python benchmarks/denoise_compare.py [--checkpoint checkpoints/demixer-denoise/best.safetensors]

    python benchmarks/denoise_compare.py --sets valentini heldout unseen --json denoise.json
    python benchmarks/denoise_compare.py --sets heldout --checkpoint A.safetensors B.safetensors --peers rnnoise
    python benchmarks/denoise_compare.py --sets heldout --seeds 1 11 12 13 --peers --atten-lim inf 40 35 30 25

Sets (all 16 kHz, from ../shared/data, read here only):
  valentini  the noisy/clean pairs in denoising_pairs/ (real recordings; demixer-denoise's test set);
  mixed      every real utterance in speech/ over a real noise recording from noise/, at 0, 5 or
             10 dB SNR (seeded; the noise cut is random). Its speakers include demixer-denoise's
             training speakers: a sanity check, not a test;
  heldout    the VCTK speakers demixer-denoise never trained on, each at 0, 5 and 10 dB over the
             real noise recordings (noise types seen in training, random cuts);
  unseen     the same speakers over a noise type never seen in training: the songs of
             mixtures_only (background music with singing), at 0, 5 and 10 dB.
Metrics: PESQ-wb gain, STOI gain and SI-SDR improvement over the noisy input (means), and the RTF
on one thread. Each method's fixed delay is found once by cross-correlation and removed.
With --dnsmos: the change of DNSMOS OVRL (the reference-free score `--report` gives speech stems) from the noisy
input to each output, and how often its sign agrees with the sign of the true SI-SDR improvement, per method and
pooled over every method and set (issue 30 asks >= 80 %).
With --predicted: the same for the quality estimator's predicted SDR of `speech` (the output) minus that of the noisy
input taken as `speech` (what `--report` predicts before and after).
pyrnnoise and noisereduce come with the dev extras (`make test` installs them); they are not runtime dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import soxr  # noqa: E402
import torch  # noqa: E402

from demixer.audio import load_audio  # noqa: E402
from demixer.evaluation import pesq, si_sdr_i, stoi  # noqa: E402

SR = 16000
DATA = Path(os.environ.get("DEMIXER_SHARED_DATA", ROOT.parent / "shared" / "data"))


def valentini() -> list[tuple[str, np.ndarray, np.ndarray]]:
    items = []
    for noisy_path in sorted(DATA.glob("denoising_pairs/*/noisy*/*")):
        clean_path = noisy_path.parent.parent / noisy_path.parent.name.replace("noisy", "clean") / noisy_path.name
        noisy = load_audio(noisy_path, sample_rate=SR, mono=True)[0][0]
        clean = load_audio(clean_path, sample_rate=SR, mono=True)[0][0]
        items.append((noisy_path.stem, noisy, clean))
    return items


def _mono16(path: Path, seconds: float | None = None) -> np.ndarray:
    y = load_audio(path, sample_rate=SR, mono=True)[0][0]
    return y if seconds is None else y[: int(seconds * SR)]


def _mix(
    speech: list[Path], noise: list[Path], seed: int, snrs: tuple[int, ...] | None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each utterance over a seeded random cut of a noise recording; ``snrs=None`` gives each utterance
    one SNR of 0/5/10 dB in turn, else every utterance is mixed at each SNR (with a different noise)."""
    rng = np.random.default_rng(seed)
    noises = [(p.stem, _mono16(p)) for p in noise]
    items, k = [], 0
    for i, path in enumerate(speech):
        clean = _mono16(path, 8)
        for snr in ((0, 5, 10)[i % 3],) if snrs is None else snrs:
            name, n = noises[k % len(noises)]
            k += 1
            start = int(rng.integers(0, max(1, n.size - clean.size)))
            cut = np.resize(n[start : start + clean.size], clean.size)
            cut = cut * np.sqrt(np.mean(clean**2) / (np.mean(cut**2) + 1e-12)) * 10 ** (-snr / 20)
            noisy = clean + cut
            peak = max(1.0, float(np.abs(noisy).max()) / 0.99)
            items.append(
                (f"{path.stem}+{name}@{snr}dB", (noisy / peak).astype(np.float32), (clean / peak).astype(np.float32))
            )
    return items


def mixed(seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return _mix(sorted(DATA.glob("speech/*/*")), sorted(DATA.glob("noise/*/*")), seed, None)


HELDOUT_SPEECH = ("speech/vctk/*", "speech/vctk_rtvc/*")  # demixer-denoise's validation speakers, never trained on


def heldout(seed: int = 1) -> list[tuple[str, np.ndarray, np.ndarray]]:
    speech = sorted(p for g in HELDOUT_SPEECH for p in DATA.glob(g))
    return _mix(speech, sorted(DATA.glob("noise/*/*")), seed, (0, 5, 10))


def unseen(seed: int = 2) -> list[tuple[str, np.ndarray, np.ndarray]]:
    speech = sorted(p for g in HELDOUT_SPEECH for p in DATA.glob(g))
    noise = sorted(DATA.glob("mixtures_only/*"))
    return _mix(speech, noise, seed, (0, 5, 10))


SETS = {"valentini": valentini, "mixed": mixed, "heldout": heldout, "unseen": unseen}


# -- methods: (noisy [T] at 16 kHz) -> estimate [T], delay not yet removed -------------------------
def demixer_model(name: str, atten_lim: float | None = None):
    from demixer.separation import Separator

    sep = Separator(name, device="cpu", atten_lim=atten_lim)
    return lambda x: sep.separate_tensor(x[None], SR)[sep.sources[0]][0].numpy()


def deepfilternet3():
    from demixer.models.deepfilternet import DeepFilterNet3

    model = DeepFilterNet3()
    return lambda x: soxr.resample(model.enhance(soxr.resample(x, SR, 48000).astype(np.float32)), 48000, SR)[: x.size]


def rnnoise():
    from pyrnnoise.rnnoise import FRAME_SIZE, create, destroy, process_mono_frame

    def run(x: np.ndarray) -> np.ndarray:
        state = create()
        x48 = soxr.resample(x, SR, 48000)
        x48 = np.concatenate([x48, np.zeros((-x48.size) % FRAME_SIZE)])
        pcm = np.clip(x48 * 32767, -32768, 32767).astype(np.int16)
        out = np.concatenate(
            [process_mono_frame(state, pcm[i : i + FRAME_SIZE])[0] for i in range(0, pcm.size, FRAME_SIZE)]
        )
        destroy(state)
        return soxr.resample(out.astype(np.float32) / 32767, 48000, SR)[: x.size]

    return run


def noisereduce_():
    import noisereduce as nr

    return lambda x: nr.reduce_noise(y=x, sr=SR, stationary=False).astype(np.float32)


PEERS = {
    "spectral-gate": lambda: demixer_model("spectral-gate"),
    "deepfilternet3": deepfilternet3,
    "rnnoise": rnnoise,
    "noisereduce": noisereduce_,
}


def predicted_sdr(noisy: np.ndarray, y: np.ndarray) -> float:
    """The quality estimator's predicted SDR of ``y`` as the speech stem of ``noisy`` (the rest as noise)."""
    from demixer.estimator.features import window_features
    from demixer.estimator.predict import estimate

    n = min(noisy.size, y.size)
    stems = {"speech": y[None, :n], "noise": (noisy[:n] - y[:n])[None]}
    found = estimate(*window_features(noisy[None, :n], stems, SR))["speech"]["predicted_sdr"]
    return -30.0 if found is None else found


def find_delay(method, items, max_lag: int = 2000) -> int:
    """The lag that best aligns a method's output with the clean speech (same for every input)."""
    scores = np.zeros(2 * max_lag + 1)
    for _, noisy, clean in items[:3]:
        y = method(noisy)
        full = np.correlate(np.pad(y, (max_lag, max_lag)), clean, mode="valid")
        scores += full / (np.linalg.norm(clean) * np.linalg.norm(y) + 1e-9)
    return int(np.argmax(scores)) - max_lag


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--checkpoint",
        nargs="+",
        default=["demixer-denoise"],
        help="demixer model names or checkpoints (default: the shipped demixer-denoise)",
    )
    ap.add_argument(
        "--peers",
        nargs="*",
        choices=list(PEERS),
        default=list(PEERS),
        help="the other methods to run (default: all; none: just the noisy input and ours)",
    )
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=["valentini", "mixed"])
    ap.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help="mix the mixed/heldout/unseen sets once per seed (new noise cuts) and pool them "
        "(default: one seed per set)",
    )
    ap.add_argument(
        "--atten-lim",
        type=float,
        nargs="+",
        metavar="DB",
        help="run demixer's own models with each of these --atten-lim values (inf: no limit; "
        "default: each model's own default, 30 dB for demixer-denoise)",
    )
    ap.add_argument("--json", type=Path, help="also write the means to this JSON file")
    ap.add_argument("--dnsmos", action="store_true", help="also: DNSMOS OVRL change and its sign agreement")
    ap.add_argument("--predicted", action="store_true", help="also: predicted SDR change and its sign agreement")
    args = ap.parse_args()
    if args.dnsmos:
        from demixer.evaluation.dnsmos import dnsmos
    torch.set_num_threads(1)

    def make_set(name: str) -> list:
        if name == "valentini" or not args.seeds:
            return SETS[name]()
        return [item for seed in args.seeds for item in SETS[name](seed)]

    sets = {name: make_set(name) for name in args.sets}
    methods = {"noisy input": lambda: lambda x: x}
    from demixer.models import model_display_name

    for lim in args.atten_lim or [None]:
        suffix = "" if lim is None else f" (atten-lim {lim:g})"
        methods.update(
            {
                model_display_name(name) + suffix: (lambda name=name, lim=lim: demixer_model(name, lim))
                for name in args.checkpoint
            }
        )
    methods.update({name: PEERS[name] for name in args.peers})
    results: dict[str, dict] = {}
    agreements: list[bool] = []  # pooled over the methods (not the noisy input) and sets
    predicted_agreements: list[bool] = []
    for set_name, items in sets.items():
        before = [dnsmos(noisy, SR)["ovrl"] for _, noisy, _ in items] if args.dnsmos else []
        predicted_before = [predicted_sdr(noisy, noisy) for _, noisy, _ in items] if args.predicted else []
        results[set_name] = {"files": len(items)}
        seconds = sum(c.size for _, _, c in items) / SR
        print(f"\n{set_name}: {len(items)} files, {seconds:.0f} s; means over files (gains are over the noisy input)")
        print(
            f"{'method':<28} {'PESQ-wb':>8} {'gain':>6} {'STOI':>6} {'gain':>6} {'SI-SDRi':>8} {'delay':>6} {'RTF':>7}"
        )
        base = {}
        for label, make in methods.items():
            try:
                method = make()
            except Exception as exc:  # a missing optional package: say so, go on
                print(f"{label:<28} unavailable: {exc}")
                continue
            delay = find_delay(method, items) if label != "noisy input" else 0
            p, s, g, d, t = [], [], [], [], 0.0
            q: list[float] = []  # predicted SDR changes
            for i, (_, noisy, clean) in enumerate(items):
                t0 = time.perf_counter()
                y = method(noisy)
                t += time.perf_counter() - t0
                y = (
                    np.concatenate([y[delay:], np.zeros(delay)])
                    if delay > 0
                    else np.concatenate([np.zeros(-delay), y[: y.size + delay]])
                )
                p.append(pesq(reference=clean, estimate=y, sample_rate=SR))
                s.append(stoi(reference=clean, estimate=y, sample_rate=SR))
                g.append(si_sdr_i(reference=clean, estimate=y, mixture=noisy))
                if args.dnsmos and label != "noisy input" and np.any(y):
                    d.append(dnsmos(y, SR)["ovrl"] - before[i])
                    agreements.append(bool(np.sign(d[-1]) == np.sign(g[-1])))
                if args.predicted and label != "noisy input" and np.any(y):
                    q.append(predicted_sdr(noisy, y) - predicted_before[i])
                    predicted_agreements.append(bool(np.sign(q[-1]) == np.sign(g[-1])))
            if label == "noisy input":
                base = {"pesq": np.mean(p), "stoi": np.mean(s)}
            results[set_name][label] = {
                "pesq_wb": round(float(np.mean(p)), 3),
                "pesq_gain": round(float(np.mean(p) - base["pesq"]), 3),
                "stoi": round(float(np.mean(s)), 4),
                "stoi_gain": round(float(np.mean(s) - base["stoi"]), 4),
                "si_sdri": round(float(np.mean(g)), 3),
                "rtf_1_thread": round(t / seconds, 4),
            }
            extra = ""
            if d:
                agree = float(np.mean(np.sign(d) == np.sign(g[: len(d)])))
                results[set_name][label].update({"dnsmos_ovrl_change": round(float(np.mean(d)), 3), "agree": agree})
                extra = f"  DNSMOS OVRL {np.mean(d):+.2f}, sign agrees with SI-SDRi on {100 * agree:.0f} %"
            if q:
                agree = float(np.mean(np.sign(q) == np.sign(g[: len(q)])))
                results[set_name][label].update({"predicted_sdr_change": round(float(np.mean(q)), 3), "agree_p": agree})
                extra += f"  predicted SDR {np.mean(q):+.2f} dB, sign agrees on {100 * agree:.0f} %"
            print(
                f"{label:<28} {np.mean(p):>8.2f} {np.mean(p) - base['pesq']:>+6.2f} {np.mean(s):>6.3f} "
                f"{np.mean(s) - base['stoi']:>+6.3f} {np.mean(g):>+8.2f} {delay:>6} {t / seconds:>7.4f}{extra}"
            )
    if agreements:
        results["dnsmos_sign_agreement"] = {"outputs": len(agreements), "share": float(np.mean(agreements))}
        print(f"\nDNSMOS OVRL change agrees in sign with the SI-SDR improvement on {100 * np.mean(agreements):.1f} % "
              f"of {len(agreements)} outputs (every method and set)")  # fmt: skip
    if predicted_agreements:
        share = float(np.mean(predicted_agreements))
        results["predicted_sign_agreement"] = {"outputs": len(predicted_agreements), "share": share}
        print(f"predicted SDR change agrees in sign with the SI-SDR improvement on {100 * share:.1f} % "
              f"of {len(predicted_agreements)} outputs (every method and set)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
