"""Readers for the published checkpoint formats: files in, a :class:`SeparationModel` out.

Nothing here unpickles code: every file goes through ``torch.load(weights_only=True)``. Demucs
packages name their model class in the pickle; that one global is mapped to an inert placeholder
(and ``fractions.Fraction`` allowed), so the constructor settings are read as data and the model is
built by demixer's own :class:`~demixer.models.htdemucs.HTDemucs`.

Formats (the manifest's ``format``):

- ``umx``: one Open-Unmix state dict per target (``role`` = the target);
- ``demucs``: Demucs 4 packages (``klass``, ``args``, ``kwargs``, ``state``; half-precision states
  are widened); several files with ``config.bag_weights`` form a bag;
- ``roformer-ckpt``: a BS-/Mel-RoFormer state dict (bare, or under ``state_dict`` with an optional
  ``model.`` prefix), built from the entry's ``config``;
- ``speechbrain``: SpeechBrain's SepFormer, three state dicts (``role``: ``encoder``, ``masknet``,
  ``decoder``), built from the entry's ``config`` (:class:`~demixer.models.sepformer.SepFormerConfig`
  settings, as in the model's ``hyperparams.yaml``);
- ``asteroid``: an Asteroid model package (``model_name``, ``model_args``, ``state_dict``; its settings
  travel in the file): ``ConvTasNet`` and ``DPRNNTasNet`` (:mod:`demixer.models.asteroid`);
- ``demixer``: a demixer ``.safetensors`` checkpoint.
"""

from __future__ import annotations

import fractions
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError, ModelNotFoundError
from ..files import atomic_path
from .base import SeparationModel


class _DemucsClass:
    """Stands in for the model class a Demucs package names; never instantiated."""


_DEMUCS_CLASSES = (
    "demucs.htdemucs.HTDemucs",
    "demucs.hdemucs.HDemucs",
    "demucs.demucs.Demucs",
    "demucs.apply.BagOfModels",
)


def safe_torch_load(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` that cannot run code from the file (weights-only unpickler)."""
    allowed: list[Any] = [(_DemucsClass, name) for name in _DEMUCS_CLASSES] + [fractions.Fraction]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors name the offending global; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(f"{path}: cannot be read as a weights-only PyTorch file ({first[:300]})") from None


def _state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ModelNotFoundError(f"{path}: expected a state dict of tensors")
    if obj and all(k.startswith("model.") for k in obj):
        obj = {k[len("model.") :]: v for k, v in obj.items()}
    return {k: v.float() if v.is_floating_point() else v for k, v in obj.items()}


def _load_strict(model: torch.nn.Module, state: dict[str, Tensor], path: Path, ignore: tuple[str, ...] = ()) -> None:
    state = {k: v for k, v in state.items() if k not in ignore}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelNotFoundError(
            f"{path}: weights do not fit the {type(model).__name__} built from the manifest: "
            f"{' '.join(str(exc).split())[:400]}"
        ) from None


def build_umx(sources: tuple[str, ...], sample_rate: int, config: dict, files: dict[str, Path]) -> SeparationModel:
    """Open-Unmix from one state dict per target; ``files`` maps each target to its file."""
    from .open_unmix import OpenUnmix, OpenUnmixConfig

    model = OpenUnmix(OpenUnmixConfig(sources=tuple(sources), sample_rate=sample_rate, **config))
    for target in sources:
        path = files[target]
        # the reference's own loader drops these (torch.hub's strict=False); they are not weights of the network
        _load_strict(
            model.targets[target],
            _state_dict(safe_torch_load(path), path),
            path,
            ignore=("sample_rate", "stft.window", "transform.0.window"),
        )
    return model.eval()


def _demucs_package(path: Path) -> tuple[list[str], dict, dict[str, Tensor]]:
    pkg = safe_torch_load(path)
    if not isinstance(pkg, dict) or not {"klass", "kwargs", "state"} <= set(pkg):
        raise ModelNotFoundError(f"{path}: not a Demucs model package (klass, args, kwargs, state)")
    state = pkg["state"]
    if isinstance(state, dict) and state.get("__quantized"):
        raise ModelNotFoundError(f"{path}: a DiffQ-quantized Demucs package; only unquantized packages are supported")
    kwargs = dict(pkg["kwargs"])
    args = list(pkg.get("args") or ())
    sources = kwargs.pop("sources", None) or (args[0] if args else None)
    if not sources:
        raise ModelNotFoundError(f"{path}: the package does not name its sources")
    return list(sources), kwargs, _state_dict(state, path)


def build_demucs(files: list[Path], bag_weights: list[list[float]] | None = None) -> SeparationModel:
    """HTDemucs (one package) or a bag of them (several, with optional per-source weights)."""
    from .htdemucs import HTDemucs, HTDemucsBag, HTDemucsConfig

    models = []
    for path in files:
        sources, kwargs, state = _demucs_package(path)
        try:
            config = HTDemucsConfig.from_demucs(sources, kwargs)
        except ValueError as exc:
            raise ModelNotFoundError(f"{path}: {exc}") from None
        model = HTDemucs(config)
        _load_strict(model, state, path)
        models.append(model.eval())
    if len(models) == 1 and bag_weights is None:
        return models[0]
    return HTDemucsBag(models, bag_weights).eval()


def build_roformer(
    architecture: str, sources: tuple[str, ...], sample_rate: int, config: dict, path: Path, convert: bool = False
) -> SeparationModel:
    """BS- or Mel-RoFormer from a community checkpoint and the settings of its published config.

    With ``convert`` (files in the model cache), the weights are also written once as
    ``<file>.safetensors`` beside the checkpoint; later loads map that file instead of unpickling
    (:mod:`demixer.models.mapped`: the per-band mask MLPs are paged in only while they run).
    """
    from safetensors.torch import save_file

    from .mapped import load_mapped
    from .roformer import BSRoformer, MelRoformer, RoformerConfig

    cls = {"bs_roformer": BSRoformer, "mel_roformer": MelRoformer}[architecture]
    settings: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    cfg = RoformerConfig(sources=tuple(sources), sample_rate=sample_rate, **settings)
    model = cls(cfg)
    mapped = path.with_name(path.name + ".safetensors")
    stamp = {"source_size": str(path.stat().st_size), "source_mtime_ns": str(path.stat().st_mtime_ns)}
    if convert and mapped.is_file():
        from safetensors import safe_open

        with safe_open(str(mapped), framework="pt") as f:
            fresh = {k: v for k, v in (f.metadata() or {}).items() if k in stamp} == stamp
        if fresh and load_mapped(model, mapped):
            return model.eval()
    state = _state_dict(safe_torch_load(path), path)
    _load_strict(model, state, path)
    if convert:
        with atomic_path(mapped) as tmp:
            save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=stamp)
        del state
        load_mapped(model, mapped)  # the copies give way to views of the map (when it can be mapped)
    return model.eval()


def build_sepformer(
    sources: tuple[str, ...], sample_rate: int, config: dict, files: dict[str, Path]
) -> SeparationModel:
    """SepFormer from SpeechBrain's ``encoder``, ``masknet`` and ``decoder`` state dicts (``files`` by role)."""
    from . import speechbrain
    from .sepformer import SepFormer, SepFormerConfig

    model = SepFormer(SepFormerConfig(sources=tuple(sources), sample_rate=sample_rate, **config))
    parts = {role: _state_dict(safe_torch_load(path), path) for role, path in files.items()}
    _load_strict(model, speechbrain.state_dict(parts), files["masknet"])
    return model.eval()


def build_asteroid(sources: tuple[str, ...], sample_rate: int, path: Path) -> SeparationModel:
    """Conv-TasNet or DPRNN-TasNet from an Asteroid package (what ``BaseModel.serialize`` writes)."""
    from . import asteroid

    package = safe_torch_load(path)
    if not isinstance(package, dict) or not {"model_name", "model_args", "state_dict"} <= set(package):
        raise ModelNotFoundError(f"{path}: not an Asteroid model package (model_name, model_args, state_dict)")
    try:
        model = asteroid.model_from_package(package, sample_rate, sources)
    except ConfigError as exc:
        raise ModelNotFoundError(f"{path}: {exc}") from None
    _load_strict(model, asteroid.state_dict(package["model_name"], _state_dict(package["state_dict"], path)), path)
    return model.eval()


class WithResidual(SeparationModel):
    """Adds a stem equal to the mixture minus the model's stems (e.g. ``instrumental`` = mix - vocals).

    Shape:
        ``forward``: ``[B, C, T]`` -> ``[B, S + 1, C, T]``.
    """

    def __init__(self, model: SeparationModel, name: str) -> None:
        super().__init__()
        self.model = model
        self._adopt_from(model)
        self.sources = (*model.sources, name)

    def forward(self, mix: Tensor) -> Tensor:
        y = self.model(mix)
        return torch.cat([y, (mix - y.sum(dim=1))[:, None]], dim=1)


def build_published(entry, files: dict[str, Path]) -> SeparationModel:
    """The model of a manifest entry from its local files (``{file name: path}``)."""
    specs = entry.files
    by_role = {spec.role: files[spec.name] for spec in specs if spec.role}
    if entry.format == "umx":
        model = build_umx(entry.sources, entry.sample_rate, entry.config, _roles(entry, by_role, entry.sources))
    elif entry.format == "speechbrain":
        roles = _roles(entry, by_role, ("encoder", "masknet", "decoder"))
        model = build_sepformer(entry.sources, entry.sample_rate, entry.config, roles)
    elif entry.format == "demucs":
        model = build_demucs([files[s.name] for s in specs], entry.config.get("bag_weights"))
    elif entry.format == "roformer-ckpt":
        model = build_roformer(
            entry.architecture, entry.sources, entry.sample_rate, entry.config, files[specs[0].name], convert=True
        )
    elif entry.format == "asteroid":
        model = build_asteroid(entry.sources, entry.sample_rate, files[specs[0].name])
    elif entry.format == "demixer":
        from .checkpoint import load_checkpoint

        model = load_checkpoint(files[specs[0].name])
    else:
        raise ModelNotFoundError(
            f"{entry.name}: unknown checkpoint format {entry.format!r} "
            "(umx, demucs, roformer-ckpt, speechbrain, asteroid, demixer)"
        )
    if tuple(model.sources) != tuple(entry.sources):
        raise ModelNotFoundError(
            f"{entry.name}: the files give stems {', '.join(model.sources)}, "
            f"the manifest says {', '.join(entry.sources)}"
        )
    if model.sample_rate != entry.sample_rate:
        raise ModelNotFoundError(
            f"{entry.name}: the files give {model.sample_rate} Hz, the manifest says {entry.sample_rate} Hz"
        )
    return WithResidual(model, entry.residual).eval() if entry.residual else model


def _roles(entry, by_role: dict[str, Path], needed: tuple[str, ...]) -> dict[str, Path]:
    """The files of the roles a format needs, or a clear error naming the missing ones."""
    missing = [r for r in needed if r not in by_role]
    if missing:
        raise ModelNotFoundError(
            f"{entry.name}: no file for role(s) {', '.join(missing)} (file 'role' in the manifest)"
        )
    return {r: by_role[r] for r in needed}


def load_published_file(path: Path) -> SeparationModel:
    """A published checkpoint file given by path, where the file describes itself (Demucs packages)."""
    return build_demucs([path])
