"""``demixer batch INPUT... -o OUT [-n MODEL] [--engine local|ray] [--ray-address ADDR] [--workers N]``."""

from __future__ import annotations

import argparse
import sys

from .options_parser import add_option_flags, options_from_args


def run(args: argparse.Namespace) -> int:
    from ..batch import run_batch

    if args.engine == "ray":
        from ..extras import require_extra

        require_extra("ray", "demixer batch --engine ray")

    options = options_from_args(args)
    summary = run_batch(
        args.inputs,
        options,
        engine=args.engine,
        workers=args.workers,
        ray_address=args.ray_address,
        manifest=args.manifest,
        progress=not args.no_progress,
    )
    for failure in summary.failures:  # one line each, naming the input (once)
        source, error = failure["input"], str(failure["error"])
        reason = error[len(source) + 2 :] if error.startswith(f"{source}: ") else error
        print(f"error: {source}: {reason}", file=sys.stderr)
    print(
        f"{summary.total} item(s): {summary.ok} separated, {summary.skipped} already done, {summary.failed} failed; "
        f"{summary.audio_seconds:.1f} s of audio in {summary.wall_seconds:.1f} s "
        f"({summary.throughput:.2f} audio s per s); manifest {summary.manifest}"
    )
    return 1 if summary.failed else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="separate large collections (local pool or Ray), resumable",
        description="Separate folders, globs or manifests (CSV with a path column, or JSONL with path) "
        "into OUT like `demixer separate`, recording every item in a JSONL manifest. "
        "Running the same command again only does what is missing.",
    )
    p.add_argument("inputs", nargs="+", help="audio files, folders, globs, or .csv/.jsonl manifests")
    p.add_argument("--engine", default="local", choices=("local", "ray"), help="local process pool or a Ray cluster")
    p.add_argument("--workers", type=int, default=1, help="worker processes / Ray actors (each loads the model once)")
    p.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--manifest", help="results manifest path (default: OUT/MODEL/manifest.jsonl)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_option_flags(p, skip=("jobs",))
    p.set_defaults(run=run)
