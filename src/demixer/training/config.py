"""Training configuration: validated dataclasses read from YAML, with ``key=value`` overrides.

A config has six sections (``model``, ``data``, ``loss``, ``optim``, ``schedule``, ``train``);
every key is checked (type, range, spelling) before anything runs, and errors name the key.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from .losses import LOSS_NAMES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelSection(_Section):
    """Which architecture to train and its constructor settings (see ``demixer.models``)."""

    architecture: str
    config: dict[str, Any] = Field(default_factory=dict)
    #: a demixer checkpoint to start from (fine-tuning a finished run on new data); its architecture
    #: and weight shapes must match. Ignored on --resume, where the run's own state is loaded.
    init: str | None = None
    #: ``false``: take from ``init`` only the tensors whose names and shapes fit, leaving the rest freshly
    #: initialised, e.g. a 4-stem network's body under a new 2-stem head. Each tensor left out is printed.
    init_strict: bool = True


class AugmentSection(_Section):
    gain_db: tuple[float, float] = (-3.0, 3.0)
    channel_swap: float = Field(0.5, ge=0, le=1)
    polarity: float = Field(0.5, ge=0, le=1)
    remix: float = Field(0.5, ge=0, le=1)
    speed: tuple[float, float] = (1.0, 1.0)


class DataSection(_Section):
    """Where examples come from.

    ``kind``: ``stems`` (MUSDB-style folders / .stem.mp4), ``speakers`` (utterance folders mixed
    on the fly), ``noisy_clean`` (VoiceBank-DEMAND-style pairs), ``noise_mix`` (speech + noise
    folders), ``extract`` (utterance folders mixed on the fly, with an enrolment clip of the first
    talker for target-speaker extraction), ``dialogue`` (speech folders, plus ``music`` and ``effects``
    folders, mixed on the fly as speech / music / effects; ``valid_music`` and ``valid_effects`` hold
    the validation clips, kept apart from the training ones).

    ``holdout`` names tracks of ``train`` kept out for validation and ``groups`` defines sources made
    of several stems, e.g. ``accompaniment: [drums, bass, other]`` (stems only). ``extra`` (stems only)
    maps a source to folders of solo clips (e.g. singing for ``vocals``) that stand in for it in a
    fraction ``extra_p`` of training examples; ``augment.speed`` plays stems faster or slower, and
    ``speed`` does so for utterances; ``eq_db`` gives each utterance (and noise clip) a random smooth
    equaliser of up to that many dB (speakers, extract, noise_mix). ``train_weights`` (stems only), one
    per ``train`` folder: the share of training examples drawn from that folder's tracks (default: every
    track equally likely, so a folder of many short synthetic songs would drown a few real ones).
    """

    kind: Literal["stems", "speakers", "noisy_clean", "noise_mix", "extract", "dialogue"]
    train: list[str] = Field(min_length=1)
    valid: list[str] = Field(default_factory=list)
    holdout: list[str] = Field(default_factory=list)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    noise: list[str] = Field(default_factory=list)
    music: list[str] = Field(default_factory=list)
    effects: list[str] = Field(default_factory=list)
    valid_music: list[str] = Field(default_factory=list)
    valid_effects: list[str] = Field(default_factory=list)
    #: dialogue: RMS of music and effects relative to the speech (dB), and the chance each is present
    music_db: tuple[float, float] = (-25.0, 3.0)
    effects_db: tuple[float, float] = (-25.0, 5.0)
    present_p: dict[str, float] = Field(default_factory=lambda: {"speech": 0.9, "music": 0.7, "effects": 0.7})
    segment: float = Field(6.0, gt=0)
    items_per_epoch: int = Field(1000, gt=0)
    valid_items: int = Field(32, gt=0)
    valid_items_per_track: int = Field(4, gt=0)
    batch_size: int = Field(4, gt=0)
    workers: int = Field(0, ge=0)
    preload: bool = False
    augment: AugmentSection = Field(default_factory=AugmentSection)
    speakers: int = Field(2, ge=1)
    overlap: tuple[float, float] = (0.5, 1.0)
    gain_db: tuple[float, float] = (-5.0, 5.0)
    snr_db: tuple[float, float] = (-5.0, 20.0)
    speaker_pattern: str | None = None
    speed: tuple[float, float] = (1.0, 1.0)
    eq_db: float = Field(0.0, ge=0)
    balance: Literal["speaker", "folder"] = "speaker"
    enrollment: float = Field(3.0, gt=0)
    extra: dict[str, list[str]] = Field(default_factory=dict)
    extra_p: float = Field(0.0, ge=0, le=1)
    train_weights: list[float] | None = None

    @field_validator("train", "valid", "noise", "music", "effects", "valid_music", "valid_effects")
    @classmethod
    def _expand(cls, paths: list[str]) -> list[str]:
        return [os.path.expandvars(os.path.expanduser(p)) for p in paths]

    @field_validator("extra")
    @classmethod
    def _expand_extra(cls, extra: dict[str, list[str]]) -> dict[str, list[str]]:
        return {source: [os.path.expandvars(os.path.expanduser(p)) for p in paths] for source, paths in extra.items()}

    @model_validator(mode="after")
    def _extra_for_stems(self) -> DataSection:
        if self.extra and self.kind != "stems":
            raise ValueError(f"data.extra is for stems data; data.kind is {self.kind!r}")
        if self.extra and not self.extra_p:
            raise ValueError("data.extra is set but data.extra_p is 0: no example would use the clips")
        if self.train_weights is not None:
            if self.kind != "stems":
                raise ValueError(f"data.train_weights is for stems data; data.kind is {self.kind!r}")
            if len(self.train_weights) != len(self.train):
                raise ValueError(
                    f"data.train_weights has {len(self.train_weights)} weights for {len(self.train)} data.train folders"
                )
            if min(self.train_weights) < 0 or sum(self.train_weights) <= 0:
                raise ValueError(f"data.train_weights must be >= 0 with a positive sum, got {self.train_weights}")
        return self


class LossSection(_Section):
    """Weighted loss terms (names: l1_wave, l1_spec, mrstft, cspec, cspec_asym, si_sdr, sdr, sdr_win,
    sdr_active); ``pit`` for speakers."""

    terms: dict[str, float] = Field(default_factory=lambda: {"l1_wave": 1.0})
    pit: bool = False

    @field_validator("terms")
    @classmethod
    def _known(cls, terms: dict[str, float]) -> dict[str, float]:
        for name in terms:
            if name not in LOSS_NAMES:
                raise ValueError(f"unknown loss term {name!r} (choose from {', '.join(LOSS_NAMES)})")
        if not any(terms.values()):
            raise ValueError("at least one loss term needs a non-zero weight")
        return terms


class OptimSection(_Section):
    name: Literal["adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleSection(_Section):
    epochs: int = Field(10, gt=0)
    warmup_steps: int = Field(0, ge=0)
    kind: Literal["constant", "cosine"] = "cosine"
    min_lr_ratio: float = Field(0.05, ge=0, le=1)
    #: a run of a fixed length in wall-clock minutes (a machine lent for a set time): the cosine runs over the
    #: time, not the steps, and training ends when it is spent (``epochs`` is then an upper bound).
    minutes: float | None = Field(None, gt=0)


class TrainSection(_Section):
    """How the run behaves: output folder, seed, device, EMA, clipping, precision, logging."""

    out: str = "runs/default"
    seed: int = 0
    device: str = "auto"
    ema: float = Field(0.0, ge=0, lt=1)
    grad_clip: float = Field(5.0, ge=0)
    amp: bool = True
    threads: int | None = Field(None, gt=0)
    checkpoint_every_steps: int = Field(0, ge=0)
    max_minutes: float | None = Field(None, gt=0)
    #: the validation metric that picks best.safetensors: ``auto`` is si_sdr for speakers and denoising, sdr
    #: (over whole segments) for stems; ``sdr_median`` is the median SDR over 1 s windows, what museval reports.
    select: Literal["auto", "sdr", "si_sdr", "sdr_median"] = "auto"
    log_every: int = Field(10, gt=0)
    tensorboard: bool = True
    progress: bool = True


class TrainConfig(_Section):
    """A whole training run. See ``configs/*.yaml`` for examples."""

    model: ModelSection
    data: DataSection
    loss: LossSection = Field(default_factory=LossSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    train: TrainSection = Field(default_factory=TrainSection)


def _suggest(loc: tuple, model: type[BaseModel]) -> str:
    """A 'did you mean' hint for a misspelt key."""
    cls: Any = model
    for part in loc[:-1]:
        field = getattr(cls, "model_fields", {}).get(part)
        cls = getattr(field, "annotation", None) if field else None
        if cls is None:
            return ""
    names = list(getattr(cls, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _format(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid training config"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key{_suggest(err['loc'], TrainConfig)}")
        elif err["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in a nested mapping; the value is parsed as YAML (numbers, lists, ...)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value")
    key, _, raw = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r} has an empty key part")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    data: dict[str, Any] | None = None,
) -> TrainConfig:
    """Read, override and validate a config.

    Raises:
        ConfigError: unreadable file, YAML syntax error, or invalid keys/values (all listed).
    """
    source = str(path) if path else "config"
    raw: dict[str, Any] = dict(data or {})
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
        raw.update(loaded)
    for item in overrides:
        apply_override(raw, item)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
