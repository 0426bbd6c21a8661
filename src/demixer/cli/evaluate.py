"""``demixer evaluate -n MODEL [-n MODEL2 ...] DATASET``."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ..extras import require_extra

    require_extra("eval", "demixer evaluate")
    from ..evaluation.evaluate import evaluate, format_summary

    bar = None
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(unit="track", desc="evaluate")

        def progress(done: int, total: int, label: str) -> None:
            bar.total = total
            bar.set_postfix_str(label)
            bar.update(done - bar.n)

    options = {}
    if args.segment:
        options["segment"] = args.segment
    if args.device:
        options["device"] = args.device
    if args.two_stems:
        options["two_stems"] = args.two_stems
    try:
        summary = evaluate(
            args.name,
            args.dataset,
            args.out,
            kind=args.kind,
            oracles=args.oracle,
            baseline=not args.no_baseline,
            limit=args.limit,
            quality=not args.no_quality,
            report=not args.no_html,
            report_seconds=args.report_seconds,
            separator_options=options,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    print(format_summary(summary))
    print(
        f"per-track JSON under {args.out}/<model>/, table {args.out}/results.csv"
        + ("" if args.no_html else f", report {args.out}/report.html")
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score models on a dataset (BSSEval v4, SI-SDR, PESQ, STOI)",
        description="Separate every track of DATASET with each model and score the stems against the "
        "references: museval-schema JSON per track, results.csv, a summary, report.html. "
        "Finished tracks are skipped when run again.",
    )
    p.add_argument(
        "dataset", help="MUSDB18(-HQ) folder, .stem.mp4 folder, speaker-mixture folder or noisy/clean pair folder"
    )
    p.add_argument(
        "-n",
        "--name",
        action="append",
        default=[],
        metavar="MODEL",
        help="model name or checkpoint (repeatable); also oracle-irm, oracle-ibm, oracle-mwf",
    )
    p.add_argument("-o", "--out", default="evaluation", help="output folder (default: evaluation)")
    p.add_argument("--kind", default="auto", choices=("auto", "music", "speakers", "denoise"), help="dataset layout")
    p.add_argument("--oracle", action="store_true", help="add the oracle IRM, IBM and MWF upper bounds")
    p.add_argument("--no-baseline", action="store_true", help="leave out the mixture-as-estimate baseline")
    p.add_argument("--limit", type=int, help="evaluate the first N tracks only")
    p.add_argument("--segment", type=float, help="seconds per chunk for the models")
    p.add_argument("-d", "--device", help="device for the models")
    p.add_argument(
        "--two-stems",
        metavar="STEM",
        help="score each model as STEM / no_STEM (the sum of its other stems), "
        "as `demixer separate --two-stems` outputs it",
    )
    p.add_argument("--no-quality", action="store_true", help="skip the reference-free quality signals")
    p.add_argument("--no-html", action="store_true", help="skip report.html")
    p.add_argument(
        "--report-seconds", type=float, default=20.0, help="seconds of audio and spectrogram per track in the report"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
