"""CleanOptions: the settings of ``demixer clean``, shared by the CLI flags, ``clean()`` keyword arguments and
the service's form fields (like :class:`~demixer.options.SeparationOptions` for ``separate``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import OptionsError
from ..options import OptionFields, option, split_csv

STAGES = ("dialogue", "denoise", "loudness", "limit")
FORMATS = ("wav", "flac")


@dataclass
class CleanOptions(OptionFields):
    """How to clean up spoken audio. Field names are the long CLI flags with ``_`` for ``-``."""

    dialogue_model: str | None = option(
        None,
        "--dialogue-model",
        help="speech / music / effects model of stage 1 (default: the dialogue task's model)",
        metavar="MODEL",
        group="cleanup",
    )
    denoiser: str = option(
        "demixer-denoise",
        "--denoiser",
        help="denoising model of stage 2, e.g. deepfilternet3",
        metavar="MODEL",
        group="cleanup",
    )
    skip: list[str] = option(
        [],
        "--skip",
        help=f"stages to leave out, comma-separated: {', '.join(STAGES)}",
        type=lambda v: split_csv(v),
        metavar="A,B",
        group="cleanup",
    )
    presence_db: float = option(
        -30.0,
        "--presence-db",
        help="stage 1 changes the audio only where music or effects reach this level (dB) relative to the input",
        type=float,
        metavar="DB",
        group="cleanup",
    )
    keep_music: float = option(
        0.0,
        "--keep-music",
        help="mix the separated music back under the speech at this gain (0: none, 1: as it was)",
        type=float,
        metavar="GAIN",
        group="cleanup",
    )
    atten_lim: float | None = option(
        None,
        "--atten-lim",
        help="denoising: remove at most this many dB of noise (default: the denoiser's)",
        type=float,
        metavar="DB",
        group="cleanup",
    )
    lufs: float = option(
        -16.0,
        "--lufs",
        help="integrated loudness target (ITU-R BS.1770 / EBU R128), LUFS",
        type=float,
        metavar="LUFS",
        group="cleanup",
    )
    true_peak: float = option(
        -1.0,
        "--true-peak",
        help="true-peak ceiling of the cleaned speech, dBTP",
        type=float,
        metavar="DBTP",
        group="cleanup",
    )
    device: str = option("auto", "-d", "--device", help="auto, cpu, cuda, cuda:N or mps", group="cleanup")
    out: str = option("cleaned", "-o", "--out", help="output root folder (OUT/TRACK/...)", metavar="DIR")
    format: str = option("wav", "--format", help="container of the cleaned speech", choices=FORMATS, group="output")
    overwrite: bool = option(False, "--overwrite", help="replace existing output files", action="store_true")
    provenance: bool = option(
        False,
        "--provenance",
        help="also write provenance.json and provenance.html: hashes, versions, options and models, so a second "
        "examiner can re-run and check the work (demixer verify)",
        action="store_true",
        group="output",
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> CleanOptions:
        """Check ranges and names. Raises :class:`OptionsError` naming the flag."""
        self.skip = split_csv(self.skip) or []

        def bad(flag: str, why: str) -> None:
            raise OptionsError(f"--{flag}: {why}")

        unknown = [s for s in self.skip if s not in STAGES]
        if unknown:
            bad("skip", f"unknown stage(s) {', '.join(unknown)} (choose from {', '.join(STAGES)})")
        if not 0.0 <= self.keep_music <= 1.0:
            bad("keep-music", f"a gain in [0, 1], got {self.keep_music}")
        if self.keep_music and "dialogue" in self.skip:
            bad("keep-music", "needs the dialogue stage (it is skipped)")
        if not -70.0 <= self.lufs <= -5.0:
            bad("lufs", f"a target between -70 and -5 LUFS, got {self.lufs}")
        if not -20.0 <= self.true_peak <= 0.0:
            bad("true-peak", f"a ceiling between -20 and 0 dBTP, got {self.true_peak}")
        if not math.isfinite(self.presence_db) or self.presence_db > 0:
            bad("presence-db", f"a level <= 0 dB, got {self.presence_db}")
        if self.atten_lim is not None and not self.atten_lim >= 0:
            bad("atten-lim", f"must be >= 0 dB, got {self.atten_lim}")
        if self.format not in FORMATS:
            bad("format", f"choose from {', '.join(FORMATS)}, got {self.format!r}")
        return self

    def runs(self, stage: str) -> bool:
        return stage not in self.skip
