"""``demixer train --config configs/NAME.yaml [key=value ...]``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def run(args: argparse.Namespace) -> int:
    from ..extras import require_extra

    require_extra("train", "demixer train")
    from ..training import load_config, train
    from ..training.distributed import launched_by_torchrun, torchrun_command

    config = load_config(args.config, args.overrides)  # validate before launching any process
    if args.out:
        config.train.out = args.out
    if args.check:
        from ..training.config import dump_config

        print(dump_config(config), end="")
        return 0
    if (args.devices > 1 or args.nnodes > 1) and not launched_by_torchrun():
        argv = [a for a in sys.argv[1:]]
        cmd = torchrun_command(
            _strip_launch_flags(argv), args.devices, args.nnodes, args.node_rank, args.master_addr, args.master_port
        )
        print("launching: " + " ".join(cmd), file=sys.stderr, flush=True)
        return subprocess.call(cmd, env=os.environ.copy())
    result = train(config, resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":
        state = "finished" if result.finished else "stopped (time limit); continue with --resume"
        print(
            f"training {state} at epoch {result.epoch}, step {result.step}: "
            f"last {result.last}"
            + (f", best {result.best} (score {result.best_score:.3f})" if result.best_score is not None else "")
        )
    return 0


_LAUNCH = ("--devices", "--nnodes", "--node-rank", "--master-addr", "--master-port")


def _strip_launch_flags(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in _LAUNCH:
            skip = True
            continue
        if a.startswith(tuple(f + "=" for f in _LAUNCH)):
            continue
        out.append(a)
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on paired data",
        description="Train a separation model from a YAML config; key=value pairs override config keys "
        "(e.g. optim.lr=3e-4 data.batch_size=8).",
    )
    p.add_argument("--config", "-c", required=True, help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, dotted keys")
    p.add_argument("--out", help="output folder (overrides train.out)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in the output folder exactly where it stopped"
    )
    p.add_argument("--overwrite", action="store_true", help="start afresh even if the output folder holds a run")
    p.add_argument("--check", action="store_true", help="validate the config, print it resolved, and exit")
    p.add_argument("--devices", type=int, default=1, help="processes (GPUs) per node: data parallel via torchrun/DDP")
    p.add_argument("--nnodes", type=int, default=1, help="number of nodes (multi-node DDP)")
    p.add_argument("--node-rank", type=int, default=0, help="this node's rank (multi-node)")
    p.add_argument("--master-addr", default="127.0.0.1", help="rendezvous host (multi-node)")
    p.add_argument("--master-port", type=int, default=29500, help="rendezvous port (multi-node)")
    p.set_defaults(run=run)
