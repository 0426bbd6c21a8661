"""Ship a trained model: copy a run's weights into the package and write its model card.

    python scripts/ship_model.py checkpoints/demixer-denoise --name demixer-denoise --tasks denoise \\
        --description "..." --hardware "2-core x86_64 CPU" \\
        --eval "denoising_pairs (real, test)=evaluation/denoise-pairs" --benchmark "peers=denoise.json" --weakness "..."

    python scripts/ship_model.py --blend demixer-4stem=0.25 --blend repet-sim=0.75 --target vocals \
        --name demixer-karaoke --tasks karaoke --description "..." --hardware "..." \
        --validation "caesium (validation)=blend.json" --eval "..." --weakness "..."

The card (``src/demixer/models/weights/<name>.json``) records what a user needs to judge the model:
the config and command that trained it, the data, the steps, epochs and wall time, the hardware, the
validation scores at the shipped step, the medians of each ``demixer evaluate`` folder given with
``--eval`` (every model evaluated there, baselines included, so the comparison is in the card), and
the known weaknesses. The weights are a demixer checkpoint; the card holds their sha256, which the
package checks on load. A blend (``--blend``, no run) ships no weights of its own: its card names the shipped
members and their weights (:class:`demixer.models.blend.Blend`), and ``--validation`` gives the benchmark JSON on
which the weights were chosen.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from demixer.files import sha256_of  # noqa: E402
from demixer.models.checkpoint import read_metadata  # noqa: E402
from demixer.models.shipped import CARD_FORMAT, INFERENCE, shipped_cards, weights_dir  # noqa: E402

MAX_BYTES = 25 * 1024 * 1024


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _number(v: str) -> float | int | None:
    if v in ("", "nan"):
        return None
    x = float(v)
    return int(x) if x.is_integer() and "." not in v else round(x, 3)


def validation_at(run: Path, step: int | None) -> dict:
    """The validation row of the shipped step (the best one when ``step`` is None) and the history length."""
    rows = _rows(run / "valid.csv")
    if not rows:
        raise SystemExit(f"{run}/valid.csv has no rows")
    row = rows[-1] if step is None else next((r for r in rows if int(r["step"]) == step), None)
    if row is None:
        raise SystemExit(f"{run}/valid.csv has no row for step {step}")
    return {k: _number(v) for k, v in row.items()}


def eval_medians(folder: Path) -> dict:
    """Median over tracks per model, target and metric, from a ``demixer evaluate`` results.csv."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    tracks = set()
    for r in _rows(folder / "results.csv"):
        tracks.add(r["track"])
        if r["value"] != "":
            values[r["model"]][r["target"]][r["metric"]].append(float(r["value"]))
    return {
        "tracks": len(tracks),
        "median": {
            m: {t: {k: round(statistics.median(v), 3) for k, v in ms.items()} for t, ms in ts.items()}
            for m, ts in values.items()
        },
    }


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _metrics(args) -> dict:
    return {
        "evaluations": {label: eval_medians(Path(folder)) for label, folder in (e.split("=", 1) for e in args.eval)},
        "benchmarks": {
            label: json.loads(Path(f).read_text()) for label, f in (b.split("=", 1) for b in args.benchmark)
        },
    }


def _selection(args) -> dict:
    """``--validation LABEL=JSON`` as card entries: the validation set's label and the benchmark run on it."""
    if not args.validation:
        return {}
    label, path = args.validation.split("=", 1)
    return {"selection_split": label, "selection": json.loads(Path(path).read_text())}


def ship_blend(args) -> int:
    """Write the card of a blend of shipped models (no weights file of its own)."""
    from demixer.models.blend import Blend
    from demixer.models.registry import list_models, load_model

    members = {name: float(w) for name, w in (b.split("=", 1) for b in args.blend)}
    entries = {e.name: e for e in list_models()}
    for name in members:
        if name not in entries or entries[name].kind not in ("trained", "dsp"):
            raise SystemExit(f"{name}: a blend's members must be shipped models (trained or dsp), offline")
    model = Blend([(load_model(name), w) for name, w in members.items()], args.target)  # checks the stems
    selection = _selection(args)
    cards = {c.name: c.data for c in shipped_cards() if c.name in members}
    card = {
        "format": CARD_FORMAT,
        "name": args.name,
        "tasks": args.tasks,
        "description": args.description,
        "architecture": "blend",
        "blend": {"target": args.target, "members": members},
        "sources": list(model.sources),
        "sample_rate": model.sample_rate,
        "audio_channels": model.audio_channels,
        "training": {
            "kind": "no training of its own: a weighted blend of shipped models' "
            f"{args.target}; only the weights were chosen, on validation data",
            "members": {
                name: {
                    "kind": entries[name].kind,
                    "sha256": cards.get(name, {}).get("sha256"),
                    "config_file": cards.get(name, {}).get("training", {}).get("config_file"),
                }
                for name in members
            },
            "hardware": args.hardware,
            "demixer_commit": git_commit(),
        },
        "data": {name: c["data"] for name, c in cards.items()},
        "metrics": {
            "validation": {"split": selection.get("selection_split"), "selection": selection.get("selection")},
            **_metrics(args),
        },
        "known_weaknesses": args.weakness,
        "notes": args.note,
    }
    out = weights_dir() / f"{args.name}.json"
    out.write_text(json.dumps(card, indent=2) + "\n")
    print(f"shipped the blend card {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "run", type=Path, nargs="?", help="training output folder (train.out): best.safetensors, config.yaml, valid.csv"
    )
    p.add_argument(
        "--blend",
        action="append",
        default=[],
        metavar="MODEL=WEIGHT",
        help="instead of a run: ship a blend of these shipped models' --target stem (repeatable)",
    )
    p.add_argument("--target", default="vocals", help="the stem a blend blends (default: vocals)")
    p.add_argument(
        "--validation",
        metavar="LABEL=JSON",
        help="the benchmark (JSON, on validation data) that chose a blend's weights or the --atten-lim default",
    )
    p.add_argument(
        "--atten-lim",
        type=float,
        metavar="DB",
        help="a denoiser's default --atten-lim (the card's inference entry), chosen on --validation",
    )
    p.add_argument(
        "--inference",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another inference setting of the card (min_enrollment_consistency, min_target_similarity), chosen on "
        "the benchmark given with --benchmark",
    )
    p.add_argument("--name", required=True)
    p.add_argument("--tasks", nargs="+", required=True)
    p.add_argument("--description", required=True)
    p.add_argument("--weights", default="best.safetensors", help="file of the run to ship (default: best.safetensors)")
    p.add_argument("--step", type=int, help="training step of those weights (default: read from the checkpoint)")
    p.add_argument("--config", type=Path, help="the config in configs/ that trained it (default: configs/NAME.yaml)")
    p.add_argument("--hardware", required=True)
    p.add_argument(
        "--eval", action="append", default=[], metavar="LABEL=FOLDER", help="a demixer evaluate output folder"
    )
    p.add_argument(
        "--benchmark",
        action="append",
        default=[],
        metavar="LABEL=JSON",
        help="a benchmark's JSON output (e.g. benchmarks/denoise_compare.py --json), copied into the card",
    )
    p.add_argument("--weakness", action="append", default=[], help="a known weakness (repeatable)")
    p.add_argument("--note", action="append", default=[], help="anything else a user should know (repeatable)")
    args = p.parse_args(argv)
    if args.blend:
        return ship_blend(args)
    if args.run is None:
        p.error("give a training run folder, or --blend")

    src = args.run / args.weights
    meta = read_metadata(src)
    size = src.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{src} is {size / 2**20:.1f} MiB: shipped weights must stay under 25 MB")
    config_file = args.config or ROOT / "configs" / f"{args.name}.yaml"
    run_config = yaml.safe_load((args.run / "config.yaml").read_text())
    step = args.step if args.step is not None else meta["extra"].get("training", {}).get("step")
    valid = validation_at(args.run, step)
    steps_run = int(_rows(args.run / "train.csv")[-1]["step"])
    out = weights_dir()
    out.mkdir(parents=True, exist_ok=True)
    dst = out / f"{args.name}.safetensors"
    shutil.copyfile(src, dst)
    config_name = str(config_file.relative_to(ROOT)) if config_file.is_relative_to(ROOT) else str(config_file)
    card = {
        "format": CARD_FORMAT,
        "name": args.name,
        "file": dst.name,
        "sha256": sha256_of(dst),
        "bytes": size,
        "tasks": args.tasks,
        "description": args.description,
        "architecture": meta["architecture"],
        "config": meta["config"],
        "sources": meta["sources"],
        "sample_rate": meta["sample_rate"],
        "training": {
            "config_file": config_name,
            "command": f"demixer train -c {config_name} (continue with --resume)",
            "shipped_step": valid.get("step"),
            "shipped_epoch": valid.get("epoch"),
            "steps_run_so_far": steps_run,
            "wall_seconds_to_shipped_step": valid.get("seconds"),
            "hardware": args.hardware,
            "loss": run_config.get("loss"),
            "optim": run_config.get("optim"),
            "schedule": run_config.get("schedule"),
            "ema": run_config.get("train", {}).get("ema"),
            "demixer_commit": git_commit(),
        },
        "data": run_config.get("data"),
        "metrics": {
            "validation": {
                "split": "the config's data.valid / holdout (never trained on)",
                "at_shipped_step": valid,
                **_selection(args),
            },
            **_metrics(args),
        },
        "known_weaknesses": args.weakness,
        "notes": args.note,
    }
    inference = {key: float(value) for key, value in (item.split("=", 1) for item in args.inference)}
    unknown = sorted(set(inference) - set(INFERENCE))
    if unknown:
        raise SystemExit(f"--inference: unknown setting(s) {', '.join(unknown)}; known: {', '.join(INFERENCE)}")
    if args.atten_lim is not None:
        inference["atten_lim"] = args.atten_lim
    if inference:
        card["inference"] = inference
    (out / f"{args.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"shipped {dst} ({size / 2**20:.1f} MiB) and {out / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
