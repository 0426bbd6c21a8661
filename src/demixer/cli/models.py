"""``demixer models list [--json]``."""

from __future__ import annotations

import argparse
import json

from ..models.registry import describe_models


def print_models(as_json: bool) -> None:
    rows = describe_models()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        default = f" [default for {', '.join(r['default_for'])}]" if r["default_for"] else ""
        print(f"{r['name']:<16} {r['kind']:<10} {'+'.join(r['sources']):<22} {r['sample_rate'] // 1000:>3} kHz  {r['description']}{default}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models")
    msub = p.add_subparsers(dest="models_command", required=True)
    lp = msub.add_parser("list", help="list the available models")
    lp.add_argument("--json", action="store_true", help="machine-readable output")
    lp.set_defaults(run=lambda args: print_models(args.json) or 0)
