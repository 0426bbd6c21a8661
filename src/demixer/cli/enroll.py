"""``demixer enroll VOICE -o VOICE.spk``: a voice's embedding, computed once, for ``--enroll`` (no audio kept)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, cast


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "enroll",
        help="save a voice for target-speaker extraction (--enroll VOICE.spk)",
        description="Compute the embedding of the voice in an enrolment clip (a few seconds of that talker alone) "
        "with a target-speaker model, and save it: `separate --task extract --enroll VOICE.spk` then needs no audio.",
    )
    p.add_argument("clip", help="a clip of the voice alone (at least the model's minimum, e.g. 2 s)")
    p.add_argument("-o", "--out", help="the .spk file to write (default: the clip's name with .spk)")
    p.add_argument("-n", "--name", help="target-speaker model (default: the extract task's)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..audio.io import load_audio
    from ..errors import OptionsError
    from ..models.registry import default_model_for, load_for_inference

    name = args.name or default_model_for("extract")
    model = cast(Any, load_for_inference(name))
    if not getattr(model, "needs_enrollment", False):
        raise OptionsError(f"-n: {name} is not a target-speaker model")
    out = Path(args.out or Path(args.clip).with_suffix(".spk"))
    if out.suffix != ".spk":
        raise OptionsError(f"-o: {out} must end in .spk (that is how --enroll tells it from audio)")
    audio, rate = load_audio(args.clip)
    model.enroll(audio, rate)
    model.save_enrollment(out, source=Path(args.clip).name)
    print(f"{args.clip}: voice saved to {out} ({name})")
    return 0
