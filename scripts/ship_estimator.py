"""Ship a trained quality estimator: copy its weights into the package and write its card.

    python scripts/ship_estimator.py RUN --command "python -m demixer.estimator.training ..." \\
        --test quality_estimates.json --speech denoise_predicted.json --hardware "2-core x86_64 CPU" --weakness "..."

RUN is what :mod:`demixer.estimator.training` wrote (``quality-estimator.safetensors``, ``training.json``). The card
(``src/demixer/estimator/weights/quality-estimator.json``) holds the tracks and separators it trained and was
validated on, the steps and validation numbers, the held-out test table of ``benchmarks/quality_estimates.py``
(``--test``) and, with ``--speech``, the sign agreement of ``benchmarks/denoise_compare.py --predicted``, the
known weaknesses and the weights' sha256, which the package checks on load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from demixer.files import sha256_of  # noqa: E402

TARGET = ROOT / "src" / "demixer" / "estimator" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--command", required=True, help="the command that trained it")
    ap.add_argument(
        "--test", type=Path, help="benchmarks/quality_estimates.py --json output (ship once without, to run it)"
    )
    ap.add_argument("--speech", type=Path, help="benchmarks/denoise_compare.py --predicted --json output")
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--weakness", action="append", default=[])
    args = ap.parse_args()
    training = json.loads((args.run / "training.json").read_text())
    TARGET.mkdir(parents=True, exist_ok=True)
    weights = TARGET / "quality-estimator.safetensors"
    shutil.copyfile(args.run / "quality-estimator.safetensors", weights)
    test = json.loads(args.test.read_text())["summary"] if args.test else {"pending": "run the benchmark, ship again"}
    card = {
        "format": "demixer.estimator-card/1",
        "name": "quality-estimator",
        "description": "Predicts a stem's SDR per second and overall, and whether its source is silent, from the "
        "mixture and the stems alone (no reference)",
        "file": weights.name,
        "sha256": sha256_of(weights),
        "config": {},
        "command": args.command,
        "hardware": args.hardware,
        "train_tracks": training["train_tracks"],
        "valid_tracks": training["valid_tracks"],
        "separators": training["separators"],
        "train_estimates": training["train_estimates"],
        "valid_estimates": training["valid_estimates"],
        "steps": training["steps"],
        "best_step": training["best_step"],
        "train_seconds": training["seconds"],
        "validation": training["valid"],
        "test": {"benchmark": "benchmarks/quality_estimates.py", **test},
        "known_weaknesses": args.weakness,
    }
    if args.speech:
        speech = json.loads(args.speech.read_text())
        card["test"]["speech_sign_agreement"] = {
            k: speech[k] for k in ("predicted_sign_agreement", "dnsmos_sign_agreement") if k in speech
        }
    (TARGET / "quality-estimator.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB) and its card")


if __name__ == "__main__":
    main()
