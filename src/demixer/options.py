"""SeparationOptions: the one source of CLI flags, API keyword arguments and HTTP form fields.

Each field's metadata holds its CLI flags and help text; the CLI builds its parser from
them, ``Separator(**kwargs)`` and the service validate through the same dataclass, so
defaults cannot drift between the three.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from .audio.writer import OutputFormat
from .errors import OptionsError

CLIP_MODES = ("rescale", "clamp", "none")
SPEEDS = ("exact", "fast")
TASK_NAMES = ("music", "karaoke", "speakers", "denoise", "extract", "dialogue")

#: Sane upper bounds of the options whose cost grows without limit. The service refuses values above them
#: (422); the CLI and the Python API take them with a warning (:meth:`SeparationOptions.over_limits`).
LIMITS: dict[str, float] = {
    "shifts": 20,  # each shift is a whole extra pass over the track
    "segment": 900.0,  # seconds per chunk (Open-Unmix's default is 600): memory grows with it
    "batch_size": 64,  # chunks per forward pass
    "jobs": 64,  # inputs in parallel
    "start": 86400.0,  # seconds: a day
    "duration": 86400.0,
}


def split_csv(value: str | list[str] | None) -> list[str] | None:
    """``"vocals,drums"`` -> ``["vocals", "drums"]`` (lists pass through)."""
    if value is None or isinstance(value, list):
        return value
    return [v.strip() for v in str(value).split(",") if v.strip()]


def option(default: Any, *flags: str, help: str, **cli: Any) -> Any:
    """A dataclass field that carries its CLI flags and help (read by :mod:`demixer.cli.options_parser`)."""
    meta = {"flags": flags, "help": help, **cli}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


_Options = TypeVar("_Options", bound="OptionFields")


class OptionFields:
    """What every options dataclass shares: validated copies, building from a mapping, and the full record."""

    def replace(self: _Options, **changes: Any) -> _Options:
        """A copy with some fields changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(cast(Any, self))}
        if unknown:
            raise OptionsError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return cast(_Options, dataclasses.replace(cast(Any, self), **changes))

    def as_dict(self) -> dict[str, Any]:
        """Every option, defaults included (what a provenance record keeps)."""
        return dataclasses.asdict(cast(Any, self))

    @classmethod
    def from_mapping(cls: type[_Options], values: dict[str, Any]) -> _Options:
        """Build from a mapping (API kwargs, form fields, a provenance record); unknown keys are an error."""
        return cls().replace(**values)


@dataclass
class SeparationOptions(OptionFields):
    """How to separate and how to write the results.

    Field names are the long CLI flags with ``_`` for ``-`` (``--two-stems`` -> ``two_stems``),
    and the HTTP form field names.
    """

    # -- what to run ---------------------------------------------------------------
    name: str | None = option(
        None, "-n", "--name", help="model name or checkpoint path (default: the task's model)", metavar="MODEL"
    )
    task: str = option(
        "music",
        "--task",
        help="job whose default model to use",
        choices=TASK_NAMES,
    )
    speakers: int | None = option(
        None,
        "--speakers",
        help="speaker separation: talkers in the mixture (2 or 3); the default model is one with that many "
        "outputs (a 2-talker model gives 2 stems whatever the mixture holds)",
        type=int,
        choices=(2, 3),
    )
    two_stems: str | None = option(
        None, "--two-stems", help="output STEM and no_STEM (the sum of the others)", metavar="STEM"
    )
    stems: list[str] | None = option(
        None, "--stems", help="write only these stems, comma-separated", type=lambda v: split_csv(v), metavar="A,B"
    )
    # -- engine ----------------------------------------------------------------------
    device: str = option("auto", "-d", "--device", help="auto, cpu, cuda, cuda:N or mps")
    segment: float | None = option(
        None, "--segment", help="chunk length in seconds (default: the model's)", type=float, metavar="SECONDS"
    )
    overlap: float | None = option(
        None,
        "--overlap",
        help="overlap between chunks, a fraction in [0, 0.9] (default: the model's, 0.25 for most)",
        type=float,
    )
    shifts: int = option(
        0, "--shifts", help="average N passes with random time shifts (slower, a bit better)", type=int, metavar="N"
    )
    speed: str = option(
        "exact",
        "--speed",
        help="exact, or fast: int8 weights, bf16 where the CPU has it and less overlap, for a small measured "
        "quality cost (see `demixer models list`); --fast is short for --speed fast",
        choices=SPEEDS,
        shortcuts={"--fast": "fast"},
    )
    batch_size: int = option(1, "--batch-size", help="chunks per forward pass", type=int, metavar="N")
    jobs: int = option(1, "-j", "--jobs", help="files separated in parallel", type=int, metavar="N")
    atten_lim: float | None = option(
        None,
        "--atten-lim",
        help="denoising: remove at most this many dB of noise "
        "(default: the model's, 30 for demixer-denoise; inf: no limit)",
        type=float,
        metavar="DB",
    )
    enroll: str | None = option(
        None,
        "--enroll",
        help="target-speaker extraction: a clip of the voice to keep, or its .spk file (demixer enroll)",
        metavar="VOICE",
    )
    start: float = option(
        0.0, "--start", help="seconds to skip at the start of each input", type=float, metavar="SECONDS"
    )
    duration: float | None = option(
        None, "--duration", help="seconds to process (default: all, never truncated)", type=float, metavar="SECONDS"
    )
    # -- output ----------------------------------------------------------------------
    out: str = option("separated", "-o", "--out", help="output root folder", metavar="DIR")
    filename: str = option(
        "{track}/{stem}.{ext}",
        "--filename",
        help="output path template under OUT/MODEL: {track} {trackext} {stem} {ext} {model}",
    )
    flac: bool = option(False, "--flac", help="write FLAC", action="store_true")
    mp3: bool = option(False, "--mp3", help="write MP3", action="store_true")
    mp3_bitrate: int = option(320, "--mp3-bitrate", help="MP3 bitrate in kb/s", type=int, metavar="KBPS")
    int24: bool = option(False, "--int24", help="write 24-bit integer samples", action="store_true")
    float32: bool = option(False, "--float32", help="write 32-bit float samples (wav)", action="store_true")
    clip_mode: str = option(
        "rescale",
        "--clip-mode",
        help="avoid clipping by rescaling all stems together, clamping, or not at all",
        choices=CLIP_MODES,
    )
    overwrite: bool = option(False, "--overwrite", help="replace existing output files", action="store_true")
    report: bool = option(
        False,
        "--report",
        help="also write reference-free quality signals (<track>.quality.json next to the stems)",
        action="store_true",
    )
    provenance: bool = option(
        False,
        "--provenance",
        help="also write <track>.provenance.json/.html: hashes, versions, options and models, so a second "
        "examiner can re-run and check the work (demixer verify)",
        action="store_true",
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> SeparationOptions:
        """Check ranges and conflicts. Raises :class:`OptionsError` with a message naming the flag."""
        self.stems = split_csv(self.stems) or None

        def bad(flag: str, why: str) -> None:
            raise OptionsError(f"--{flag}: {why}")

        if self.task not in TASK_NAMES:
            bad("task", f"unknown task {self.task!r}")
        if self.speakers is not None and self.speakers not in (2, 3):
            bad("speakers", f"2 or 3, got {self.speakers}")
        if self.speakers is not None and self.task != "speakers":
            bad("speakers", f"only for --task speakers (the task is {self.task})")
        if self.segment is not None and not self.segment > 0:
            bad("segment", f"must be > 0 seconds, got {self.segment}")
        if self.overlap is not None and not 0.0 <= self.overlap <= 0.9:
            bad("overlap", f"must be a fraction in [0, 0.9], got {self.overlap}")
        if self.shifts < 0:
            bad("shifts", f"must be >= 0, got {self.shifts}")
        if self.batch_size < 1:
            bad("batch-size", f"must be >= 1, got {self.batch_size}")
        if self.jobs < 1:
            bad("jobs", f"must be >= 1, got {self.jobs}")
        if self.start < 0:
            bad("start", f"must be >= 0, got {self.start}")
        if self.duration is not None and not self.duration > 0:
            bad("duration", f"must be > 0, got {self.duration}")
        if self.atten_lim is not None and not self.atten_lim >= 0:
            bad("atten-lim", f"must be >= 0 dB, got {self.atten_lim}")
        if self.speed not in SPEEDS:
            bad("speed", f"choose from {', '.join(SPEEDS)}, got {self.speed!r}")
        if self.clip_mode not in CLIP_MODES:
            bad("clip-mode", f"choose from {', '.join(CLIP_MODES)}")
        if self.flac and self.mp3:
            bad("flac", "--flac and --mp3 exclude each other")
        if self.int24 and self.float32:
            bad("int24", "--int24 and --float32 exclude each other")
        if self.two_stems is not None and self.stems:
            bad("two-stems", "--two-stems and --stems exclude each other")
        if "{stem}" not in self.filename:
            bad("filename", "the template must contain {stem}, or stems would overwrite each other")
        try:
            _ = self.output_format  # checks the format flags together
        except ValueError as exc:
            raise OptionsError(str(exc)) from None
        return self

    def over_limits(self) -> list[str]:
        """One message per option above its :data:`LIMITS` value (empty when all are within)."""
        out = []
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            if value is not None and value > limit:
                out.append(f"--{name.replace('_', '-')}: {value:g} is above the limit of {limit:g}")
        return out

    @property
    def output_format(self) -> OutputFormat:
        container = "flac" if self.flac else "mp3" if self.mp3 else "wav"
        encoding = "int24" if self.int24 else "float32" if self.float32 else "int16"
        return OutputFormat(container, encoding, self.mp3_bitrate)
