"""Building the train and validation datasets a config describes, for a given model."""

from __future__ import annotations

from typing import Any

from ..data import (
    Augment,
    NoiseMixDataset,
    NoisyCleanDataset,
    SpeakerMixDataset,
    StemDataset,
    TargetSpeakerDataset,
    find_tracks,
)
from ..data.base import MixtureDataset
from ..data.dialogue import DialogueBalance, DialogueMixDataset
from ..errors import ConfigError, DemixerError
from ..models.base import SeparationModel
from .config import DataSection


def _stems(cfg: DataSection, model: SeparationModel, seed: int) -> tuple[MixtureDataset, MixtureDataset]:
    stems = sorted({part for s in model.sources for part in cfg.groups.get(s, [s])})
    per_root = [find_tracks(root, stems) for root in cfg.train]
    tracks = [t for found in per_root for t in found]
    unknown = sorted(set(cfg.holdout) - {t.name for t in tracks})
    if unknown:
        raise ConfigError(f"data.holdout names tracks that are not in data.train: {', '.join(unknown)}")
    train = [t for t in tracks if t.name not in cfg.holdout]
    weights = None
    if cfg.train_weights is not None:  # a folder's weight shared by its tracks
        kept = [[t for t in found if t.name not in cfg.holdout] for found in per_root]
        weights = [w / len(found) for w, found in zip(cfg.train_weights, kept) for _ in found]
    valid = [t for t in tracks if t.name in cfg.holdout] + [t for root in cfg.valid for t in find_tracks(root, stems)]
    if not train:
        raise ConfigError("no training tracks left after data.holdout")
    if not valid:
        raise ConfigError("no validation tracks: set data.valid folders or data.holdout track names")
    common: dict[str, Any] = dict(
        sources=model.sources,
        sample_rate=model.sample_rate,
        channels=model.audio_channels or 2,
        segment=cfg.segment,
        preload=cfg.preload,
        groups=cfg.groups,
    )
    a = cfg.augment
    return (
        StemDataset(
            train,
            items=cfg.items_per_epoch,
            seed=seed,
            speed=a.speed,
            extra=cfg.extra,
            extra_p=cfg.extra_p,
            track_weights=weights,
            augment=Augment(gain_db=a.gain_db, channel_swap=a.channel_swap, polarity=a.polarity, remix=a.remix),
            **common,
        ),
        StemDataset(valid, validation=True, items_per_track=cfg.valid_items_per_track, seed=seed, **common),
    )


def _speakers(cfg: DataSection, model: SeparationModel, seed: int) -> tuple[MixtureDataset, MixtureDataset]:
    if not cfg.valid:
        raise ConfigError(f"{cfg.kind} data need data.valid utterance folders with other speakers than data.train")
    common: dict[str, Any] = dict(
        speakers=cfg.speakers,
        sample_rate=model.sample_rate,
        segment=cfg.segment,
        overlap=cfg.overlap,
        gain_db=cfg.gain_db,
        noise=cfg.noise or None,
        snr_db=cfg.snr_db,
        speaker_pattern=cfg.speaker_pattern,
        speed=cfg.speed,
        eq_db=cfg.eq_db,
        balance=cfg.balance,
    )
    if cfg.kind == "extract":
        common["enrollment"] = cfg.enrollment
    cls = TargetSpeakerDataset if cfg.kind == "extract" else SpeakerMixDataset
    return (
        cls(cfg.train, items=cfg.items_per_epoch, seed=seed, **common),
        cls(cfg.valid, items=cfg.valid_items, seed=seed, validation=True, **common),
    )


def _noisy_clean(cfg: DataSection, model: SeparationModel, seed: int) -> tuple[MixtureDataset, MixtureDataset]:
    if not cfg.valid:
        raise ConfigError("noisy_clean data need a data.valid pair folder")
    common: dict[str, Any] = dict(sample_rate=model.sample_rate, segment=cfg.segment, seed=seed)
    train = [NoisyCleanDataset(root, items=cfg.items_per_epoch, **common) for root in cfg.train]
    if len(train) > 1:
        raise ConfigError("noisy_clean takes one data.train folder (it may hold several noisy*/clean* pairs)")
    return train[0], NoisyCleanDataset(cfg.valid[0], validation=True, **common)


def _noise_mix(cfg: DataSection, model: SeparationModel, seed: int) -> tuple[MixtureDataset, MixtureDataset]:
    if not cfg.noise or not cfg.valid:
        raise ConfigError("noise_mix data need data.noise folders and data.valid speech folders")
    common: dict[str, Any] = dict(
        sample_rate=model.sample_rate, segment=cfg.segment, snr_db=cfg.snr_db, eq_db=cfg.eq_db, seed=seed
    )
    return (
        NoiseMixDataset(cfg.train, cfg.noise, items=cfg.items_per_epoch, **common),
        NoiseMixDataset(cfg.valid, cfg.noise, items=cfg.valid_items, validation=True, **common),
    )


def _dialogue(cfg: DataSection, model: SeparationModel, seed: int) -> tuple[MixtureDataset, MixtureDataset]:
    needed = ("valid", "music", "effects", "valid_music", "valid_effects")
    missing = [f"data.{name}" for name in needed if not getattr(cfg, name)]
    if missing:
        raise ConfigError(f"dialogue data need {', '.join(missing)} (held-out voices, music and effects apart)")
    unknown = sorted(set(cfg.present_p) - set(DialogueMixDataset.sources))
    if unknown:
        raise ConfigError(f"data.present_p names {unknown}; the dialogue sources are speech, music, effects")
    chance = {**{"speech": 0.9, "music": 0.7, "effects": 0.7}, **cfg.present_p}
    balance = DialogueBalance(
        music_db=cfg.music_db,
        effects_db=cfg.effects_db,
        speech_p=chance["speech"],
        music_p=chance["music"],
        effects_p=chance["effects"],
    )
    common: dict[str, Any] = dict(sample_rate=model.sample_rate, segment=cfg.segment, balance=balance, seed=seed)
    return (
        DialogueMixDataset(cfg.train, cfg.music, cfg.effects, items=cfg.items_per_epoch, eq_db=cfg.eq_db, **common),
        DialogueMixDataset(
            cfg.valid, cfg.valid_music, cfg.valid_effects, items=cfg.valid_items, validation=True, **common
        ),
    )


BUILDERS = {
    "stems": _stems,
    "speakers": _speakers,
    "extract": _speakers,
    "noisy_clean": _noisy_clean,
    "noise_mix": _noise_mix,
    "dialogue": _dialogue,
}


def build_datasets(cfg: DataSection, model: SeparationModel, seed: int = 0) -> tuple[MixtureDataset, MixtureDataset]:
    """``(train, valid)`` datasets whose sources, rate and channels match ``model``.

    Raises:
        ConfigError: missing folders, no data, or sources the model does not have.
    """
    try:
        train, valid = BUILDERS[cfg.kind](cfg, model, seed)
    except ConfigError:
        raise
    except (DemixerError, ValueError) as exc:
        raise ConfigError(f"data: {exc}") from None
    if tuple(train.sources) != tuple(model.sources):
        raise ConfigError(
            f"the data give sources {list(train.sources)} but the model predicts {list(model.sources)}: "
            "set model.config.sources to match"
        )
    return train, valid
