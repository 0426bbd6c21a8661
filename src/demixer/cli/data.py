"""``demixer data synth music|speech|noise --out DIR --minutes N --seed S`` and
``demixer data mix speakers|denoise --out DIR --speech FOLDER ...`` (fixed evaluation sets) and
``demixer data join ROOT --out DIR`` (short per-speaker clips joined into utterances)."""

from __future__ import annotations

import argparse
from pathlib import Path


def run_synth(args: argparse.Namespace) -> int:
    from ..extras import require_extra

    require_extra("synth", "demixer data synth")
    from ..data.synth import KINDS
    from ..errors import OptionsError

    if args.minutes <= 0:
        raise OptionsError(f"--minutes must be > 0, got {args.minutes}")
    out = Path(args.out)
    kwargs: dict = {}
    if args.sample_rate:
        kwargs["sample_rate"] = args.sample_rate
    if args.kind == "music":
        kwargs.update(soundfont=args.soundfont, vocals=args.vocals or None)
    elif args.kind == "speech":
        kwargs["speech"] = args.speech or None
    else:
        kwargs.update(noise=args.noise or None, speech=args.speech or None)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=round(args.minutes * 60), unit="s audio", desc=f"synth {args.kind}")

        def progress(done: float, total: float) -> None:
            bar.update(round(done) - bar.n)

        kwargs["progress"] = progress
    try:
        made = KINDS[args.kind](out, args.minutes, args.seed, **kwargs)
    finally:
        if bar is not None:
            bar.close()
    print(f"{len(made)} {args.kind} item(s) written under {out}")
    return 0


def run_mix(args: argparse.Namespace) -> int:
    from ..data.fixed_sets import describe, mix_dataset, write_fixed_set
    from ..errors import OptionsError

    if args.items <= 0 or args.seconds <= 0:
        raise OptionsError("--items and --seconds must be > 0")
    if args.kind == "denoise" and not args.noise:
        raise OptionsError("denoise sets need --noise folders")
    rate = args.sample_rate or (8000 if args.kind == "speakers" else 16000)
    dataset = mix_dataset(
        args.kind,
        speech=args.speech,
        noise=args.noise,
        items=args.items,
        seconds=args.seconds,
        seed=args.seed,
        sample_rate=rate,
        speakers=args.speakers,
    )
    made = write_fixed_set(dataset, Path(args.out))
    describe(
        Path(args.out),
        kind=args.kind,
        speech=args.speech,
        noise=args.noise,
        items=args.items,
        seconds=args.seconds,
        seed=args.seed,
        sample_rate=rate,
        speakers=args.speakers if args.kind == "speakers" else None,
    )
    print(
        f"{len(made)} {args.kind} mixture(s) written under {args.out} (score them with `demixer evaluate {args.out}`)"
    )
    return 0


def run_join(args: argparse.Namespace) -> int:
    from ..data.join import join_clips

    bar = None
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(unit="speaker", desc="join")

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        made = join_clips(
            args.root,
            args.out,
            seconds=args.seconds,
            gap=(args.gap[0], args.gap[1]),
            sample_rate=args.sample_rate,
            top_db=args.top_db,
            seed=args.seed,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    speakers = len({p.parent for p in made})
    print(f"{len(made)} utterance(s) of {speakers} speaker(s) written under {args.out} (summary: join.json)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make training data")
    dsub = p.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser(
        "synth",
        help="synthesise training data in the MUSDB layout",
        description="music: fluidsynth-rendered stems with TTS or real-singing vocals; "
        "speech: TTS voices (espeak-ng, flite, festival) + real utterances; noise: coloured + real noise.",
    )
    s.add_argument("kind", choices=("music", "speech", "noise"))
    s.add_argument("--out", "-o", required=True, help="output folder")
    s.add_argument("--minutes", type=float, default=10.0, help="minutes of audio to make")
    s.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    s.add_argument("--sample-rate", type=int, default=None, help="output rate (music 44100, speech/noise 16000)")
    s.add_argument("--soundfont", help="General MIDI .sf2 (default: Debian's FluidR3_GM or TimGM6mb)")
    s.add_argument("--vocals", action="append", help="folder of real singing / vocal stems to use (repeatable)")
    s.add_argument(
        "--speech", action="append", help="folder of real utterances to include (speech) or to make babble from (noise)"
    )
    s.add_argument("--noise", action="append", help="folder of real noise recordings to include (repeatable)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(run=run_synth)
    m = dsub.add_parser(
        "mix",
        help="write a fixed evaluation set of mixtures made from real recordings",
        description="speakers: LibriMix layout (mix_clean/, s1/, s2/ ...) of different talkers; "
        "denoise: noisy/ + clean/ pairs of speech over noise. The speaker of a file comes "
        "from its folder or name, as in training. Same seed, same files.",
    )
    m.add_argument("kind", choices=("speakers", "denoise"))
    m.add_argument("--out", "-o", required=True, help="output folder")
    m.add_argument("--speech", action="append", required=True, help="folder of utterances (repeatable)")
    m.add_argument("--noise", action="append", help="folder of noise recordings (repeatable; required for denoise)")
    m.add_argument("--items", type=int, default=50, help="mixtures to write")
    m.add_argument("--seconds", type=float, default=4.0, help="length of each mixture")
    m.add_argument("--speakers", type=int, default=2, help="talkers per mixture (speakers)")
    m.add_argument("--seed", type=int, default=0, help="random seed")
    m.add_argument("--sample-rate", type=int, help="output rate (speakers 8000, denoise 16000)")
    m.set_defaults(run=run_mix)
    j = dsub.add_parser(
        "join",
        help="join short per-speaker clips (letters, words) into utterances",
        description="Each first-level folder of ROOT is one speaker. Every clip is trimmed of its "
        "leading and trailing silence and levelled; a speaker's clips are joined in random "
        "order with short pauses into utterances of about --seconds: OUT/<speaker>/*.flac, "
        "the layout `data.train` reads speakers from.",
    )
    j.add_argument("root", help="folder with one subfolder per speaker")
    j.add_argument("--out", "-o", required=True, help="output folder")
    j.add_argument("--seconds", type=float, default=8.0, help="length of an utterance")
    j.add_argument(
        "--gap",
        type=float,
        nargs=2,
        default=(0.08, 0.35),
        metavar=("MIN", "MAX"),
        help="pause between two clips, in seconds",
    )
    j.add_argument("--sample-rate", type=int, default=16000, help="output rate")
    j.add_argument(
        "--top-db", type=float, default=40.0, help="silence threshold of the trim, dB below the loudest frame"
    )
    j.add_argument("--seed", type=int, default=0, help="random seed")
    j.add_argument("--no-progress", action="store_true", help="no progress bar")
    j.set_defaults(run=run_join)
