"""The ``demixer`` command: thin subcommands over the public API.

Exit codes: 0 success, 1 some input failed (or an unexpected fault: one ``error:`` line, the traceback under
``--verbose``), 2 bad usage or options.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from ..errors import DemixerError, OptionsError, one_line
from ..extras import extra_for_module
from ..version import __version__
from . import batch, clean, data, enroll, env, evaluate, inspect, models, separate, serve, train, verify


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demixer", description="Audio source separation: music stems, karaoke, speakers, denoising."
    )
    parser.add_argument("-V", "--version", action="version", version=f"demixer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never touch the network (as DEMIXER_OFFLINE=1): published models must already be in the cache",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (separate, clean, verify, enroll, batch, evaluate, inspect, train, serve, data, models, env):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may follow options (`demixer train -c x.yaml --out y a.b=1`)
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    if args.offline:  # the process's own setting; worker processes (batch, serve) inherit it
        os.environ["DEMIXER_OFFLINE"] = "1"
    try:
        return int(args.run(args) or 0)
    except OptionsError as exc:
        print(f"demixer: error: {exc}", file=sys.stderr)
        return 2
    except DemixerError as exc:
        print(f"demixer: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demixer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unforeseen fault: one line, the traceback under --verbose
        missing = (exc.name or "") if isinstance(exc, ModuleNotFoundError) else ""
        needed = extra_for_module(missing) if missing else None
        if needed is not None:  # an optional dependency is missing: name the extra that brings it
            hint = f"pip install 'demixer[{needed}]' (missing: {missing})"
            print(f"demixer: error: this needs the '{needed}' extra: {hint}", file=sys.stderr)
            return 1
        if args.verbose:
            traceback.print_exc()
        print(
            f"demixer: error: {one_line(exc)}" + ("" if args.verbose else " (run with --verbose for the traceback)"),
            file=sys.stderr,
        )
        return 1
