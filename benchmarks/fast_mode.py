"""``--fast`` against exact separation, per architecture, on real music, in one run.

    python benchmarks/fast_mode.py                        # bs, mel, htdemucs (published configs), unet (demixer-4stem)
    python benchmarks/fast_mode.py --arch bs --seconds 16 --json
    python benchmarks/fast_mode.py --trained bs=run/best.safetensors --trained mel=...   # SDR cost on trained weights
    options: --seconds N (music length; default 30) --threads 2 --depth N (RoFormers: fewer layers, quicker)
             --record (also save the rows as this machine's numbers for `demixer models list`)

For each architecture it prints the exact and fast real-time factors (each side separated by
``Separator(...).separate_tensor`` in a fresh process, ``speed="exact"`` / ``"fast"``, model
loading not timed), the speed-up, each side's peak RSS, the **fidelity** (SNR of the fast output
against the exact output on the same music) and, for trained weights, the **SDR cost**: the
museval median SDR (1 s windows, averaged over stems) of exact minus fast, on held-out songs.

Music: the held-out CC0 song "caesium" (``../shared/data/music/train/caesium``: the sum of its stems,
from 60 s on) for speed and fidelity; caesium and the MUSDB excerpt (``music/valid``) for the SDR
cost. The published configs run with random weights (seed 0), as no published music weights can be
downloaded here; ``unet`` is the shipped ``demixer-4stem``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data" / "music"
STEMS = ("vocals", "drums", "bass", "other")
ARCHS = ("bs", "mel", "htdemucs", "unet")
ARCH_NAMES = {"bs": "bs_roformer", "mel": "mel_roformer", "htdemucs": "htdemucs", "unet": "unet"}


def song(folder: Path, start: float = 0.0, seconds: float | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(mixture [2, T], {stem: [2, T]})`` of a stems folder; the mixture is the stems' sum where no file holds it."""
    stems = {}
    for stem in STEMS:
        path = next(folder.glob(f"{stem}.*"))
        info = sf.info(str(path))
        frames = -1 if seconds is None else int(seconds * info.samplerate)
        x, _ = sf.read(str(path), dtype="float32", start=int(start * info.samplerate), frames=frames, always_2d=True)
        stems[stem] = x.T.copy()
    length = min(s.shape[1] for s in stems.values())
    stems = {k: v[:, :length] for k, v in stems.items()}
    return sum(stems.values()), stems  # type: ignore[return-value]


def held_out_songs() -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    songs = {"caesium (validation)": song(DATA / "train" / "caesium")}
    for folder in sorted((DATA / "valid").iterdir()):
        songs[f"{folder.name} (test)"] = song(folder)
    return songs


def build(arch: str, depth: int | None, trained: str | None):
    """The model of one row: a trained checkpoint, the shipped U-Net, or a published config with seed-0 weights."""
    from demixer.models.registry import load_model

    if trained:
        return load_model(trained)
    if arch == "unet":
        return load_model("demixer-4stem")
    from published_speed import ours

    return ours(arch, depth)


# -- one side in a fresh process ---------------------------------------------------------------------


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_side(args: argparse.Namespace) -> None:
    from demixer.models.fast import FastModel, make_fast
    from demixer.models.mapped import load_mapped
    from demixer.separation import Separator

    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    model = build(args.arch, args.depth, args.trained).eval()
    if args.weights:  # random published-config weights made by the parent, loaded as demixer loads checkpoints
        if not (model.streamed_modules() and load_mapped(model, args.weights)):
            from safetensors.torch import load_file

            model.load_state_dict(load_file(args.weights), assign=True)
    model = model.fuse_for_inference()
    if args.side == "fast":  # as load_for_inference does: in place, int8 weights cached beside the inputs
        model = make_fast(model, "cpu", cache=Path(args.inputs).with_name("model.int8.safetensors"))
    separator = Separator(model=model)
    inputs = np.load(args.inputs)
    results = {}
    seconds = 0.0
    for name in inputs.files:
        start = time.perf_counter()
        stems = separator.separate_tensor(inputs[name], 44100)
        seconds += time.perf_counter() - start if name == "speed" else 0.0
        results[name] = np.stack([stems[s].numpy() for s in model.sources])
    np.savez(args.save, **results)
    applied = model.summary() if isinstance(model, FastModel) else None
    print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_mb(), "sources": list(model.sources), "fast": applied}))


# -- the comparison ----------------------------------------------------------------------------------


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / max(np.sum((estimate - reference) ** 2), 1e-20)))


def median_sdr(references: dict[str, np.ndarray], estimates: np.ndarray, sources: list[str]) -> float:
    """museval's median SDR over 1 s windows, averaged over the stems both sides have."""
    from demixer.evaluation.bsseval import bss_eval_v4

    names = [s for s in sources if s in references and np.any(references[s])]
    ref = np.stack([references[s] for s in names])
    est = np.stack([estimates[sources.index(s)] for s in names])[..., : ref.shape[-1]]
    result = bss_eval_v4(reference=ref, estimate=est)
    return float(np.mean([np.nanmedian(row) for row in result.sdr]))


def measure(
    arch: str, trained: str | None, args: argparse.Namespace, music: np.ndarray, songs: dict, tmp: Path
) -> dict:
    """One row: ``trained`` weights (a checkpoint or shipped name, scored on the held-out songs too), or the
    architecture's published config with seed-0 weights (speed and fidelity only)."""
    inputs = {"speed": music}
    if trained:
        inputs.update({f"song{i}": mix for i, (mix, _) in enumerate(songs.values())})
    np.savez(tmp / "inputs.npz", **inputs)
    cmd = [
        sys.executable,
        __file__,
        "--arch",
        arch,
        "--threads",
        str(args.threads),
        "--inputs",
        str(tmp / "inputs.npz"),
    ]
    if trained:
        cmd += ["--trained-path", trained]
    else:
        from safetensors.torch import save_file

        torch.manual_seed(0)
        model = build(arch, args.depth, None)
        save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, str(tmp / f"{arch}.safetensors"))
        del model
        cmd += ["--weights", str(tmp / f"{arch}.safetensors")]
        if args.depth:
            cmd += ["--depth", str(args.depth)]
    sides = {}
    for side in ("exact", "fast"):
        done = subprocess.run(
            [*cmd, "--side", side, "--save", str(tmp / f"{side}.npz")], capture_output=True, text=True
        )
        if done.returncode:
            sys.exit(f"{arch} {side} failed:\n{done.stderr[-3000:]}")
        sides[side] = json.loads(done.stdout.strip().splitlines()[-1])
    exact, fast = np.load(tmp / "exact.npz"), np.load(tmp / "fast.npz")
    seconds = music.shape[1] / 44100
    row = {
        "arch": arch,
        "model": trained
        or f"{ARCH_NAMES[arch]} published config, random weights"
        + (f", depth {args.depth}" if args.depth and arch in ("bs", "mel") else ""),
        "seconds": round(seconds, 1),
        "exact_rtf": round(sides["exact"]["seconds"] / seconds, 4),
        "fast_rtf": round(sides["fast"]["seconds"] / seconds, 4),
        "speedup": round(sides["exact"]["seconds"] / sides["fast"]["seconds"], 2),
        "peak_mb": round(sides["fast"]["peak_mb"]),
        "exact_peak_mb": round(sides["exact"]["peak_mb"]),
        "fidelity_snr_db": round(snr_db(exact["speed"], fast["speed"]), 1),
        "fast_mode": sides["fast"].get("fast"),  # what --fast changed (None: no fast mode, it ran exact)
        "sdr_loss_db": None,
    }
    if trained:
        sources = sides["exact"]["sources"]
        losses, per_song = [], {}
        for i, (name, (_, refs)) in enumerate(songs.items()):
            a, b = median_sdr(refs, exact[f"song{i}"], sources), median_sdr(refs, fast[f"song{i}"], sources)
            per_song[name] = {"exact_sdr": round(a, 3), "fast_sdr": round(b, 3)}
            losses.append(a - b)
        row["sdr_loss_db"] = round(float(np.mean(losses)), 3)
        row["songs"] = per_song
    return row


def record(rows: list[dict]) -> Path:
    """Save the rows as this machine's fast-mode numbers, which `demixer models list` shows."""
    from demixer.devices import cpu_features
    from demixer.models.fast import measured_file, write_measurements

    path = measured_file()
    machine = f"{torch.get_num_threads()} threads; " + ", ".join(k for k, v in cpu_features().items() if v)
    by_arch: dict[str, dict] = {}
    for row in rows:  # speed and fidelity from the published config; the SDR cost from trained weights
        if not row.get("fast_mode"):
            continue  # no fast mode: nothing to show
        entry = by_arch.setdefault(ARCH_NAMES[row["arch"]], {})
        if row["sdr_loss_db"] is not None:
            entry.update(sdr_loss_db=row["sdr_loss_db"], sdr_loss_model=row["model"])
        if "published config" in row["model"] or "exact_rtf" not in entry:
            entry.update({k: v for k, v in row.items() if k not in ("sdr_loss_db", "songs")})
    write_measurements(path, by_arch, machine)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", action="append", choices=ARCHS, help="architectures (repeatable; default: all)")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the music timed (from caesium at 60 s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth", type=int, default=None, help="RoFormers: fewer layers than published (quicker)")
    ap.add_argument("--trained", action="append", default=[], metavar="ARCH=PATH", help="trained weights for an arch")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--record", action="store_true", help="save as this machine's numbers for `demixer models list`")
    ap.add_argument("--side", choices=("exact", "fast"), help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--trained-path", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        args.arch, args.trained = args.arch[0], args.trained_path
        run_side(args)
        return
    warnings.simplefilter("ignore")
    music, _ = song(DATA / "train" / "caesium", start=60.0, seconds=args.seconds)
    songs = held_out_songs()
    rows = []
    if not args.json:
        print(f"{music.shape[1] / 44100:.0f} s of real music (caesium), {args.threads} threads")
        print(
            f"{'arch':<9} {'exact RTF':>9} {'fast RTF':>9} {'speed-up':>8} {'peak MB':>8} {'SNR dB':>7} {'SDR loss':>8}"
        )
    trained = dict(t.split("=", 1) for t in args.trained)
    runs = [(arch, "demixer-4stem" if arch == "unet" else None) for arch in args.arch or ARCHS]
    runs += [(arch, path) for arch, path in trained.items() if arch != "unet"]
    for arch, weights in runs:
        with tempfile.TemporaryDirectory() as tmp:
            row = measure(arch, weights, args, music, songs, Path(tmp))
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            loss = "-" if row["sdr_loss_db"] is None else f"{row['sdr_loss_db']:.2f}"
            print(
                f"{arch:<9} {row['exact_rtf']:>9.3f} {row['fast_rtf']:>9.3f} {row['speedup']:>7.2f}x "
                f"{row['peak_mb']:>8} {row['fidelity_snr_db']:>7.1f} {loss:>8}   ({row['model']})",
                flush=True,
            )
    if args.record:
        print(f"recorded in {record(rows)}", file=sys.stderr)


if __name__ == "__main__":
    main()
