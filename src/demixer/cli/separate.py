"""``demixer separate``: files, folders and globs in, one file per stem out."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from ..errors import DemixerError, one_line
from ..files import check_output_folder, output_fault
from ..separation.naming import expand_inputs
from ..separation.separator import Separator
from .models import print_models
from .options_parser import add_option_flags, options_from_args

log = logging.getLogger("demixer")


def example_path() -> Path:
    """The bundled example song (synthesised by the project, see demixer.data.example)."""
    return Path(str(resources.files("demixer") / "examples" / "example.flac"))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "separate",
        help="separate audio files into stems",
        description="Separate audio files, folders or globs into one file per stem: OUT/MODEL/TRACK/STEM.EXT.",
    )
    p.add_argument("inputs", nargs="*", help="audio files, folders (searched recursively) or glob patterns")
    p.add_argument("--example", action="store_true", help="separate the bundled example song")
    p.add_argument("--list-models", action="store_true", help="list the available models and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_option_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.list_models:
        print_models(as_json=False)
        return 0
    options = options_from_args(args)
    items = list(args.inputs) + ([str(example_path())] if args.example else [])
    if not items:
        raise DemixerError("no input given (pass files, folders or globs, or --example)")
    inputs = expand_inputs(items)
    if not inputs:
        raise DemixerError(f"no audio files found in {' '.join(items)}")
    check_output_folder(options.out)  # a file in the way or a read-only folder: one line before any work
    separator = Separator(options=options, progress=not args.no_progress and sys.stderr.isatty())
    plans = separator.output_paths(inputs)
    log.info("model %s -> stems %s; %d input(s)", separator.model_name, ", ".join(separator.sources), len(inputs))
    stop = threading.Event()  # set by a fault every further input would meet too (disk full, read-only)

    def one(job: tuple[Path, dict[str, Path]]) -> bool | None:
        """True: written; False: this input failed; None: not tried, the run stopped at an output fault."""
        path, outputs = job
        if stop.is_set():
            return None
        try:
            result = separator.separate_to_files(path, outputs)
        except Exception as exc:  # one line per fault, and on with the other inputs unless no output can be written
            folder = next(iter(outputs.values())).parent
            fault = output_fault(folder, exc)
            if fault is not None:
                if not stop.is_set():
                    stop.set()
                    print(f"error: {folder}: {fault}; stopping (no further output can be written)", file=sys.stderr)
                return None
            log.debug("%s failed", path, exc_info=True)
            print(
                f"error: {exc}" if isinstance(exc, DemixerError) else f"error: {path}: {one_line(exc)}", file=sys.stderr
            )
            return False
        written = ", ".join(str(p) for p in result.outputs.values())
        print(f"{path}: {len(result.outputs)} stems written: {written}", flush=True)
        if result.provenance_paths:
            print(f"  provenance: {result.provenance_paths['provenance']}", flush=True)
        if result.quality is not None:
            verdicts = [v["verdict"] for v in result.quality["stems"].values() if "verdict" in v]
            print(f"  quality -> {result.quality_path}", flush=True)
            for line in verdicts or [result.quality.get("quality_estimator_unavailable", "no quality estimate")]:
                print(f"    {line}", flush=True)
        return True

    jobs = list(zip(inputs, plans))
    if options.jobs > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(options.jobs) as pool:
            ok = list(pool.map(one, jobs))
    else:
        ok = [one(job) for job in jobs]
    failed, untried = ok.count(False), ok.count(None)
    if failed:
        print(f"{failed} of {len(jobs)} input(s) failed", file=sys.stderr)
    if untried:
        print(f"{untried} of {len(jobs)} input(s) not separated: the run stopped at an output fault", file=sys.stderr)
    return 1 if failed or untried else 0
