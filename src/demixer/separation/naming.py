"""Inputs to outputs: expanding files, folders and globs; output paths that never collide."""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path

from ..audio.io import AUDIO_EXTENSIONS
from ..errors import OptionsError
from ..files import walk

log = logging.getLogger("demixer")


def expand_inputs(items: list[str]) -> list[Path]:
    """Files stay as given (their content decides if they are audio); folders give their audio
    files recursively (following links); patterns with ``* ? [`` are globbed (``**`` recursive).
    A path that does not exist is kept, so that it fails with a clear message of its own. A folder
    without audio files and a pattern that matches nothing are skipped with a warning each."""
    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(
                folder / name
                for folder, _, names in walk(p)
                for name in names
                if Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith(".")
            )
            if not found:
                log.warning("warning: %s: a folder with no audio files in it (skipped)", item)
            out += found
        elif not p.exists() and any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(item), recursive=True) if Path(m).is_file())
            if not matches:
                log.warning("warning: no file matches %r (skipped)", item)
            out += matches
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def track_name(path: str | os.PathLike[str]) -> str:
    """``song.wav`` -> ``song``; ``song.stem.mp4`` -> ``song``."""
    name = Path(path).name
    for suffix in (".stem.mp4", ".stem.m4a"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def render(template: str, *, track: str, trackext: str, stem: str, ext: str, model: str) -> Path:
    """Fill the ``--filename`` template; the result must stay inside the output folder."""
    try:
        rel = template.format(track=track, trackext=trackext, stem=stem, ext=ext, model=model)
    except (KeyError, IndexError, ValueError) as exc:
        raise OptionsError(
            f"--filename: bad template {template!r} ({exc}); fields: track trackext stem ext model"
        ) from None
    path = Path(rel)
    if path.is_absolute() or ".." in path.parts or not rel.strip():
        raise OptionsError(f"--filename: {rel!r} must be a relative path inside the output folder")
    return path


def plan_outputs(
    inputs: list[Path], out_root: Path, model: str, stems: tuple[str, ...], ext: str, template: str
) -> list[dict[str, Path]]:
    """Output path of every stem of every input, under ``out_root/model``.

    Two inputs that would write the same file (``a/song.wav`` and ``b/song.flac``) never
    collide: the later one's track name gets ``-2``, ``-3``, ... in input order.
    """
    taken: set[Path] = set()
    plans = []
    for path in inputs:
        base = track_name(path)
        trackext = Path(path).name.replace(".", "_")
        n = 1
        while True:
            track = base if n == 1 else f"{base}-{n}"
            paths = {
                s: out_root / model / render(template, track=track, trackext=trackext, stem=s, ext=ext, model=model)
                for s in stems
            }
            if len(set(paths.values())) != len(paths):
                raise OptionsError(f"--filename: {template!r} gives the same file for several stems")
            if not taken.intersection(paths.values()):
                break
            n += 1
        taken.update(paths.values())
        plans.append(paths)
    return plans
