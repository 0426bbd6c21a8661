"""``demixer clean``: spoken audio in, cleaned speech (and what was removed) out."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cleanup.options import CleanOptions
from ..errors import DemixerError, one_line
from ..files import check_output_folder
from ..separation.naming import expand_inputs
from .options_parser import add_option_flags, given_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "clean",
        help="clean up spoken audio: dialogue separation, denoising, loudness and a true-peak limit",
        description="Clean up speech recordings (podcasts, interviews): remove music and effects, then noise, "
        "normalise the loudness (--lufs) and limit the true peak (--true-peak). Writes OUT/TRACK/speech.wav, "
        "the removed parts under OUT/TRACK/removed/ and OUT/TRACK/report.json.",
    )
    p.add_argument("inputs", nargs="+", help="audio files, folders (searched recursively) or glob patterns")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_option_flags(p, cls=CleanOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..cleanup.chain import Cleaner

    options = given_options(args, CleanOptions)
    inputs = expand_inputs(list(args.inputs))
    if not inputs:
        raise DemixerError(f"no audio files found in {' '.join(args.inputs)}")
    check_output_folder(options.out)
    bar = None
    if not args.no_progress and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(
            total=100, unit="%", leave=False, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
        )

    def show(info: dict[str, Any]) -> None:  # one bar per file across the stages
        if bar is not None:
            bar.set_description_str(f"{info['file'][:30]} {info['stage']}")
            bar.n = round(100 * info["progress"], 1)
            bar.refresh()

    cleaner = Cleaner(options, callback=show)
    failed = 0
    for path, folder in zip(inputs, cleaner.track_folders(inputs)):
        try:
            result = cleaner.clean_file(path, folder)
        except DemixerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        except Exception as exc:
            print(f"error: {path}: {one_line(exc)}", file=sys.stderr)
            failed += 1
            continue
        r = result.report
        loudness = "no measurable loudness" if r["loudness_out_lufs"] is None else f"{r['loudness_out_lufs']} LUFS"
        peak = "" if r["true_peak_out_dbtp"] is None else f", true peak {r['true_peak_out_dbtp']} dBTP"
        print(
            f"{path}: cleaned speech {result.outputs['speech']} ({loudness}{peak}); report {result.report_path}"
            + "".join(f"; {k} {v}" for k, v in result.extra_files.items()),
            flush=True,
        )
        print(f"  {r['chain']}", flush=True)
    if bar is not None:
        bar.close()
    if failed:
        print(f"{failed} of {len(inputs)} input(s) failed", file=sys.stderr)
    return 1 if failed else 0
