"""``demixer inspect FILE_OR_DIR [--reference DIR]``."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ..extras import require_extra

    require_extra("eval", "demixer inspect")
    from ..evaluation.inspect import inspect_path

    result = inspect_path(args.path, args.out, args.reference, args.max_seconds)
    for image in result.images:
        print(f"wrote {image}")
    for line in result.verdicts:
        print(line)
    for stem, values in result.medians.items():
        print(f"{stem:<14} " + "  ".join(f"{k} {v:6.2f}" for k, v in values.items()) + "  (median over 1 s frames)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="spectrogram images of a file or stems; metrics over time against references")
    p.add_argument("path", help="an audio file, or a folder of stems (e.g. separated/MODEL/TRACK)")
    p.add_argument(
        "--reference", "-r", help="folder of reference stems with the same names: plot SDR/SIR/SAR over time"
    )
    p.add_argument("--out", "-o", help="output folder (or .png for a file); default: beside the input")
    p.add_argument("--max-seconds", type=float, help="look at the first N seconds only")
    p.set_defaults(run=run)
