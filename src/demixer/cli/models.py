"""``demixer models list|card|download|verify|remove``: the models there are, the cards of the trained ones
shipped in the package, and the published ones' files."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ModelNotFoundError
from ..models.registry import describe_models, task_choices


def print_models(as_json: bool) -> None:
    rows = describe_models()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print("Default per task (-n overrides; `demixer models default TASK NAME` sets your own):")
    for choice in filter(None, task_choices().values()):
        print(f"  {choice.task:<9} {choice.name:<28} {choice.reason}")
        if choice.hint:
            print(f"  {'':<9} {choice.hint}")
    print()
    for r in rows:
        default = f" [default for {', '.join(r['default_for'])}]" if r["default_for"] else ""
        state = ""
        if r["kind"] == "published":
            state = " [cached]" if r["cached"] else " [download: demixer models download " + r["name"] + "]"
        print(
            f"{r['name']:<24} {r['kind']:<10} {'+'.join(r['sources']):<30} {r['sample_rate'] // 1000:>3} kHz  "
            f"{r['description']}{default}{state}"
        )
        if r["fast"]:
            print(f"{'':<24} --fast: {fast_line(r['fast'])}")


def default(args: argparse.Namespace) -> int:
    """Show, set or clear the model a task uses without -n."""
    from ..models.defaults import set_user_default
    from ..models.registry import choose_default, list_models
    from ..pretrained import load_manifest

    if args.clear or args.name:
        if args.name and args.name not in {e.name for e in list_models()} | set(load_manifest()):
            raise ModelNotFoundError(f"unknown model {args.name!r} (see `demixer models list`)")
        path = set_user_default(args.task, None if args.clear else args.name)
        print(f"{args.task}: {'choice cleared' if args.clear else args.name} ({path})")
    choice = choose_default(args.task)
    print(f"{choice.task}: {choice.name} ({choice.reason})")
    if choice.hint:
        print(choice.hint)
    return 0


def fast_line(fast: dict) -> str:
    """What --fast gives for a model, measured (``benchmarks/fast_mode.py``)."""
    cost = [f"fidelity {fast['fidelity_snr_db']:.0f} dB SNR against exact output"]
    if fast.get("sdr_loss_db") is not None:
        cost.append(f"SDR {-fast['sdr_loss_db']:+.2f} dB on a small trained model")
    return (
        f"RTF {fast['exact_rtf']:.2f} -> {fast['fast_rtf']:.2f} ({fast['speedup']:.1f}x), {', '.join(cost)} "
        f"[{fast['measured_on']}]"
    )


def card(args: argparse.Namespace) -> int:
    """Print the model card of a shipped trained model (JSON)."""
    from ..models.shipped import shipped_cards

    cards = {c.name: c for c in shipped_cards()}
    if args.name not in cards:
        raise ModelNotFoundError(
            f"{args.name!r} is not a trained model shipped with demixer"
            + (f" (shipped: {', '.join(cards)})" if cards else " (none ships in this version)")
        )
    print(json.dumps(cards[args.name].data, indent=2))
    return 0


def _entries(names: list[str]):
    from ..pretrained import load_manifest

    manifest = load_manifest()
    unknown = [n for n in names if n not in manifest]
    if unknown:
        raise ModelNotFoundError(f"not a published model: {', '.join(unknown)} (published: {', '.join(manifest)})")
    return [manifest[n] for n in names] if names else list(manifest.values())


def download(args: argparse.Namespace) -> int:
    from ..pretrained import fetch

    for entry in _entries(args.names):
        paths = fetch(entry, progress=not args.no_progress and sys.stderr.isatty())
        print(
            f"{entry.name}: {len(paths)} file(s) verified in "
            f"{next(iter(paths.values())).parent} (licence: {entry.licence})"
        )
    return 0


def verify(args: argparse.Namespace) -> int:
    """Re-hash every cached file of the named models (default: all that are present)."""
    from ..pretrained import ChecksumError, status
    from ..pretrained import verify as verify_file

    bad = 0
    for entry in _entries(args.names):
        for row in status(entry):
            if not row.present:
                if args.names:
                    print(f"{entry.name}/{row.spec.name}: missing ({row.path})")
                    bad += 1
                continue
            try:
                digest = verify_file(row.spec, row.path, force=True)
                print(f"{entry.name}/{row.spec.name}: ok (sha256 {digest}; checked by {row.spec.check})")
            except ChecksumError as exc:
                print(f"{entry.name}/{row.spec.name}: BAD: {exc}")
                bad += 1
    return 1 if bad else 0


def remove(args: argparse.Namespace) -> int:
    from ..pretrained import remove as remove_files

    for entry in _entries(args.names):
        removed = remove_files(entry)
        print(f"{entry.name}: {len(removed)} file(s) removed")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models; download, verify or remove published ones")
    msub = p.add_subparsers(dest="models_command", required=True)
    lp = msub.add_parser("list", help="list the available models (published ones with their cache state)")
    lp.add_argument("--json", action="store_true", help="machine-readable output")
    lp.set_defaults(run=lambda args: print_models(args.json))
    cp = msub.add_parser(
        "card", help="print the model card of a trained model shipped with demixer: data, training, metrics, weaknesses"
    )
    cp.add_argument("name", metavar="NAME")
    cp.set_defaults(run=card)
    dp = msub.add_parser("download", help="download published models into the model cache and verify them")
    dp.add_argument("names", nargs="+", metavar="NAME", help="published model names (see `demixer models list`)")
    dp.add_argument("--no-progress", action="store_true", help="no progress bar")
    dp.set_defaults(run=download)
    fp = msub.add_parser("default", help="show, set or clear the model a task uses when no -n is given")
    fp.add_argument("task", choices=("music", "karaoke", "speakers", "denoise", "extract"))
    fp.add_argument("name", nargs="?", metavar="NAME", help="the model to use from now on (any `models list` name)")
    fp.add_argument("--clear", action="store_true", help="forget your choice: back to the automatic default")
    fp.set_defaults(run=default)
    vp = msub.add_parser("verify", help="re-hash cached files against the manifest")
    vp.add_argument("names", nargs="*", metavar="NAME", help="published model names (default: every cached file)")
    vp.set_defaults(run=verify)
    rp = msub.add_parser("remove", help="delete the cached files of published models")
    rp.add_argument("names", nargs="+", metavar="NAME")
    rp.set_defaults(run=remove)
