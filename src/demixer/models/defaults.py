"""Which model a task uses when no ``-n`` is given, and why.

In order:

1. the user's choice for the task, set with ``demixer models default TASK NAME`` (kept in
   ``defaults.json`` in the user's config folder, or ``$DEMIXER_CONFIG_DIR``);
2. the published model with the best published score (the manifest's ``published_score``: SI-SNRi for
   speakers, SDR for music) among those whose files are all **already in the model cache**; a model
   without a published score is never chosen on its own;
3. the model that ships with demixer (:data:`TASK_PREFERENCES`).

Nothing here downloads. When a scored published model that is not cached beats the choice, :attr:`DefaultChoice.hint`
says which and how to get it. ``speakers`` (2 or 3) limits the speaker task to models with that many outputs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotFoundError, OptionsError
from .base import are_speakers

DEFAULTS_FILE = "defaults.json"

#: The models each task prefers when no ``-n`` is given and no published model is cached, best first: the
#: project's trained model where this install ships it, else a training-free one.
TASK_PREFERENCES: dict[str, tuple[str, ...]] = {
    "music": ("demixer-4stem", "hpss"),
    "karaoke": (
        "demixer-karaoke",
        "repet-sim",
    ),  # REPET-SIM: +3.9 / +2.9 dB vocals SDR over "center" (Caesium, MUSDB excerpt)
    "denoise": ("demixer-denoise", "spectral-gate"),
    "speakers": ("demixer-2spk",),
    "extract": ("demixer-extract",),
    "dialogue": ("demixer-dialogue",),
}
TASKS = tuple(TASK_PREFERENCES)


def config_dir() -> Path:
    """``$DEMIXER_CONFIG_DIR`` if set, else the platform's user config folder (``~/.config/demixer`` on Linux)."""
    import platformdirs

    env = os.environ.get("DEMIXER_CONFIG_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_config_dir("demixer"))


def user_defaults() -> dict[str, str]:
    """The user's model per task (``{"speakers": "sepformer-wsj02mix", ...}``); empty when none is set."""
    path = config_dir() / DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise OptionsError(f"{path}: not readable as JSON ({exc}); fix or delete it") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise OptionsError(f'{path}: expected {{"TASK": "MODEL", ...}}; fix or delete it')
    return data


def set_user_default(task: str, name: str | None) -> Path:
    """Record ``name`` as the task's model (``None``: forget the choice); returns the file written."""
    from ..files import atomic_path

    if task not in TASKS:
        raise OptionsError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
    chosen = user_defaults()
    if name is None:
        chosen.pop(task, None)
    else:
        chosen[task] = name
    path = config_dir() / DEFAULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(chosen, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class DefaultChoice:
    """The model a task runs without ``-n``.

    Attributes:
        task: the task (after ``--two-stems vocals`` turned music into karaoke).
        name: the model.
        reason: why, in words (``your choice``, ``best published model in the cache``, ``ships with demixer``).
        hint: one line naming a better published model that is not in the cache, and how to get it; or None.
    """

    task: str
    name: str
    reason: str
    hint: str | None = None


def speaker_count(sources: tuple[str, ...]) -> int | None:
    """How many talkers a model separates (``speaker1..N`` stems), or None for other models."""
    return len(sources) if are_speakers(sources) else None


def check_speaker_count(model_name: str, sources: tuple[str, ...], speakers: int | None) -> None:
    """``--speakers N`` with a model: it must separate N talkers (:class:`OptionsError` if not)."""
    count = speaker_count(sources)
    if speakers is not None and count != speakers:
        what = f"{count} talkers" if count else f"{', '.join(sources)}, not talkers"
        raise OptionsError(f"--speakers {speakers}: {model_name} separates {what}")


def _published_candidates(task: str, speakers: int | None) -> list[tuple[float, str, str, bool]]:
    """(score, name, published quality, cached) of the manifest's scored models for the task, best first."""
    from ..pretrained import load_manifest, status

    rows = []
    for entry in load_manifest().values():
        if task not in entry.tasks or entry.published_score is None:
            continue
        if speakers is not None and speaker_count(entry.sources) != speakers:
            continue
        cached = all(f.present for f in status(entry))
        rows.append((entry.published_score, entry.name, entry.published_quality, cached))
    return sorted(rows, key=lambda row: -row[0])


def pick_default(
    task: str, shipped: dict[str, tuple[str, ...]], two_stems: str | None = None, speakers: int | None = None
) -> DefaultChoice:
    """The model ``task`` uses when none is named (see the module docstring for the order).

    ``shipped`` maps each model this install ships (or builds without downloading) to its stems
    (:func:`demixer.models.registry.choose_default` passes them).
    """
    if task not in TASK_PREFERENCES:
        raise ModelNotFoundError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
    if task == "music" and two_stems == "vocals":
        task = "karaoke"
    if speakers is not None and task != "speakers":
        raise OptionsError(f"--speakers: only for --task speakers (the task is {task})")
    mine = user_defaults().get(task)
    if mine:
        return DefaultChoice(task, mine, f"your choice ({config_dir() / DEFAULTS_FILE})")
    published = _published_candidates(task, speakers)
    best_uncached = next((row for row in published if not row[3]), None)
    cached = next((row for row in published if row[3]), None)
    if cached is not None:
        score, name, quality, _ = cached
        choice = DefaultChoice(task, name, f"best published model in the cache ({quality or f'{score:g} dB'})")
        if best_uncached is not None and best_uncached[0] > score:
            return DefaultChoice(task, name, choice.reason, _hint(best_uncached, name))
        return choice
    for name in TASK_PREFERENCES[task]:
        if name not in shipped:
            continue
        if speakers is not None and speaker_count(shipped[name]) != speakers:
            continue
        hint = _hint(best_uncached, name) if best_uncached is not None else None
        return DefaultChoice(task, name, "ships with demixer (no published model for the task in the cache)", hint)
    wanted = f"{speakers}-talker model" if speakers else "model"
    fix = f"; `demixer models download {best_uncached[1]}` gets one" if best_uncached else ""
    raise ModelNotFoundError(
        f"no {wanted} for task {task!r} ships with this version of demixer or is in the model cache"
        f"{fix}, or pass one with -n NAME|PATH"
    )


def _hint(better: tuple[float, str, str, bool], current: str) -> str:
    score, name, quality, _ = better
    return (
        f"hint: {name} ({quality or f'published score {score:g} dB'}) is likely better than {current}; "
        f"get it with `demixer models download {name}` (-q hides this line)"
    )
