"""Self-describing checkpoints: safetensors weights whose metadata say how to rebuild the model.

The metadata hold the architecture name, the constructor config (JSON), the sources, the
sample rate and the versions that wrote it. Nothing is unpickled, so loading an untrusted
file cannot run code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import ModelNotFoundError
from ..files import atomic_path
from .base import SeparationModel

FORMAT = "demixer.checkpoint/1"


def _architectures() -> dict[str, tuple[Callable[..., SeparationModel], type]]:
    """Architecture name -> (model class, config dataclass). Imported lazily to keep start-up light."""
    from .convtasnet import ConvTasNet, ConvTasNetConfig
    from .denoiser import Denoiser, DenoiserConfig
    from .extraction import SpeakerDenoiser, SpeakerDenoiserConfig, SpeakerExtractorConfig, TargetSpeakerExtractor
    from .htdemucs import HTDemucs, HTDemucsConfig
    from .open_unmix import OpenUnmix, OpenUnmixConfig
    from .roformer import BSRoformer, MelRoformer, RoformerConfig
    from .tiny import TinyMaskConfig, TinyMaskModel
    from .unet import UNet, UNetConfig

    return {
        "tiny_mask": (TinyMaskModel, TinyMaskConfig),
        "unet": (UNet, UNetConfig),
        "bs_roformer": (BSRoformer, RoformerConfig),
        "mel_roformer": (MelRoformer, RoformerConfig),
        "denoiser": (Denoiser, DenoiserConfig),
        "convtasnet": (ConvTasNet, ConvTasNetConfig),
        "speaker_extractor": (TargetSpeakerExtractor, SpeakerExtractorConfig),
        "speaker_denoiser": (SpeakerDenoiser, SpeakerDenoiserConfig),
        "open_unmix": (OpenUnmix, OpenUnmixConfig),
        "htdemucs": (HTDemucs, HTDemucsConfig),
    }


def architectures() -> dict[str, tuple[Callable[..., SeparationModel], type]]:
    """Trainable architectures by name: ``(model class, config dataclass)``."""
    return _architectures()


def build_model(architecture: str, config: dict[str, Any]) -> SeparationModel:
    """A fresh model of a registered architecture from a config mapping (lists become tuples).

    Raises:
        ModelNotFoundError: unknown architecture.
        TypeError: a config key the architecture does not take.
    """
    archs = _architectures()
    if architecture not in archs:
        raise ModelNotFoundError(f"unknown architecture {architecture!r} (known: {', '.join(sorted(archs))})")
    cls, config_cls = archs[architecture]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise TypeError(
            f"{architecture} has no config key(s) {', '.join(unknown)} (it takes: {', '.join(sorted(fields))})"
        )
    return cls(config_cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()}))


def architecture_of(model: SeparationModel) -> str:
    for name, (cls, _) in _architectures().items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered architecture: it cannot be saved as a checkpoint")


def save_checkpoint(model: SeparationModel, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (weights + how to rebuild it) to a ``.safetensors`` file, atomically."""
    from ..version import __version__

    path = Path(path)
    config = dataclasses.asdict(model.config)
    meta = {
        "format": FORMAT,
        "architecture": architecture_of(model),
        "config": json.dumps(config),
        "sources": json.dumps(list(model.sources)),
        "sample_rate": str(model.sample_rate),
        "demixer_version": __version__,
        "torch_version": torch.__version__,
        "extra": json.dumps(extra or {}),
    }
    tensors = {
        k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()
    }  # clone: shared buffers (rotary) saved apart
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ModelNotFoundError(f"{path}: not a demixer checkpoint (no '{FORMAT}' metadata)")
    return {
        "architecture": meta["architecture"],
        "config": json.loads(meta["config"]),
        "sources": json.loads(meta["sources"]),
        "sample_rate": int(meta["sample_rate"]),
        "demixer_version": meta.get("demixer_version"),
        "extra": json.loads(meta.get("extra", "{}")),
    }


def load_checkpoint(path: str | os.PathLike[str], mapped: bool = True) -> SeparationModel:
    """Rebuild a model from a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the ``.safetensors`` file.
        mapped: for models with ``streamed_modules()`` (the RoFormers), keep the weights as read-only
            views of the memory-mapped file, paging the streamed ones out between uses
            (:mod:`demixer.models.mapped`: for inference). False: ordinary, trainable copies.
    """
    meta = read_metadata(path)
    archs = _architectures()
    if meta["architecture"] not in archs:
        raise ModelNotFoundError(
            f"{path}: unknown architecture {meta['architecture']!r} (known: {', '.join(sorted(archs))})"
        )
    fields = {f.name for f in dataclasses.fields(archs[meta["architecture"]][1])}
    model = build_model(meta["architecture"], {k: v for k, v in meta["config"].items() if k in fields})
    if mapped and model.streamed_modules():
        from .mapped import load_mapped

        if load_mapped(model, path):
            return model.eval()
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def renamed(key: str, renames: tuple[tuple[str, str], ...]) -> str:
    """``key`` after the first ``(pattern, replacement)`` of ``renames`` that matches it (unchanged if none does):
    a reference package's state-dict key under demixer's module names."""
    for pattern, replacement in renames:
        name, hits = re.subn(pattern, replacement, key)
        if hits:
            return name
    return key
