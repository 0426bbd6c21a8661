"""``demixer verify RECORD``: check a provenance record and re-run its work (exit 1 on any difference)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check a provenance record: re-hash its files and re-run the work",
        description="Check a provenance.json written with --provenance: its seal, the input and output hashes, the "
        "models' weights and the environment, then re-run the work and compare the outputs bit for bit.",
    )
    p.add_argument("record", help="provenance.json")
    p.add_argument("--no-rerun", action="store_true", help="check hashes only; do not re-run the work")
    p.add_argument("--input", help="where the input is now, if it moved (its hash must still match)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..provenance import verify_record

    verdict = verify_record(args.record, rerun=not args.no_rerun, input_path=args.input)
    for line in verdict.checks:
        print(f"ok: {line}")
    for line in verdict.warnings:
        print(f"warning: {line}")
    for line in verdict.problems:
        print(f"DIFFERS: {line}")
    if verdict.ok:
        print(f"{args.record}: verified" + ("" if args.no_rerun else ", outputs reproduced bit for bit"))
        return 0
    print(f"{args.record}: {len(verdict.problems)} difference(s)", file=sys.stderr)
    return 1
