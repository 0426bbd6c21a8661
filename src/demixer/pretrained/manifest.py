"""The manifest of published checkpoints: what each name is, where its files come from, how to check them.

The package ships ``manifest.json``. ``$DEMIXER_MANIFEST`` may name more JSON files (separated by
``os.pathsep``) whose entries are added, or replace shipped entries of the same name: a private
mirror, a model of your own, or a test server.

An entry::

    "htdemucs": {
      "architecture": "htdemucs",          # how to build it (demixer.models.published)
      "format": "demucs",                  # how its files are read
      "sources": ["drums", "bass", "other", "vocals"],
      "sample_rate": 44100,
      "tasks": ["music"],
      "licence": "MIT",
      "description": "...",
      "config": {...},                     # constructor settings, where the files do not carry them
      "files": [{"name": "955717e8-8726e21a.th", "url": "https://...", "sha256": "8726e2...", "size": 84141911}]
    }

Checksums, strongest first: ``sha256`` (the whole digest, from a public record), ``sha256_prefix``
(the digest prefix publishers such as Demucs and torch.hub put in the file name), or neither; in
the last two cases the whole digest is pinned at the first download and checked from then on.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError

_HEX = re.compile(r"^[0-9a-f]+$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class FileSpec:
    """One file of a published model.

    Attributes:
        name: the file name in the cache (no folders).
        url: where to download it from (``https://``, ``http://`` or ``file://``).
        sha256: the whole SHA-256 digest, when a public record gives it.
        sha256_prefix: the digest's leading hex digits as the publisher states them (file names).
        size: bytes, when known.
        role: what the file is to the loader (e.g. the Open-Unmix target it holds).
    """

    name: str
    url: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    role: str | None = None

    @property
    def check(self) -> str:
        """How the file's content is verified: ``sha256``, ``sha256-prefix`` or ``pinned at first download``."""
        return "sha256" if self.sha256 else "sha256-prefix" if self.sha256_prefix else "pinned at first download"


@dataclass(frozen=True)
class ManifestEntry:
    """A published model: name, files, and how to build it (see the module docstring)."""

    name: str
    architecture: str
    format: str
    sources: tuple[str, ...]
    sample_rate: int
    files: tuple[FileSpec, ...]
    tasks: tuple[str, ...] = ()
    licence: str = "unspecified"
    description: str = ""
    homepage: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    residual: str | None = None  # a stem made as mixture minus the others (single-target models)
    published_quality: str = ""
    published_score: float | None = None  # the headline number of published_quality (dB), to rank models by

    @property
    def output_sources(self) -> tuple[str, ...]:
        return self.sources + ((self.residual,) if self.residual else ())


def _file(raw: dict[str, Any], where: str) -> FileSpec:
    unknown = set(raw) - {"name", "url", "sha256", "sha256_prefix", "size", "role"}
    if unknown:
        raise ModelNotFoundError(f"{where}: unknown file key(s) {', '.join(sorted(unknown))}")
    name, url = raw.get("name"), raw.get("url")
    if not isinstance(name, str) or not _FILE_NAME.match(name):
        raise ModelNotFoundError(f"{where}: 'name' must be a plain file name (letters, digits, . _ -), got {name!r}")
    if not isinstance(url, str) or not url.startswith(("https://", "http://", "file://")):
        raise ModelNotFoundError(f"{where}: 'url' must be an http(s):// or file:// URL, got {url!r}")
    sha, prefix = raw.get("sha256"), raw.get("sha256_prefix")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64 or not _HEX.match(sha.lower())):
        raise ModelNotFoundError(f"{where}: 'sha256' must be 64 hex digits, got {sha!r}")
    if prefix is not None and (
        not isinstance(prefix, str) or not 8 <= len(prefix) < 64 or not _HEX.match(prefix.lower())
    ):
        raise ModelNotFoundError(f"{where}: 'sha256_prefix' must be 8 to 63 hex digits, got {prefix!r}")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ModelNotFoundError(f"{where}: 'size' must be a positive integer, got {size!r}")
    return FileSpec(name, url, sha.lower() if sha else None, prefix.lower() if prefix else None, size, raw.get("role"))


_ENTRY_KEYS = {
    "architecture",
    "format",
    "sources",
    "sample_rate",
    "files",
    "tasks",
    "licence",
    "description",
    "homepage",
    "config",
    "residual",
    "published_quality",
    "published_score",
}


def _entry(name: str, raw: dict[str, Any], where: str) -> ManifestEntry:
    where = f"{where}: {name}"
    if not isinstance(raw, dict):
        raise ModelNotFoundError(f"{where}: an entry must be a JSON object")
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise ModelNotFoundError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_ENTRY_KEYS))})"
        )
    for key in ("architecture", "format", "sources", "sample_rate", "files"):
        if key not in raw:
            raise ModelNotFoundError(f"{where}: '{key}' is missing")
    files = tuple(_file(f, f"{where}: files[{i}]") for i, f in enumerate(raw["files"]))
    if not files:
        raise ModelNotFoundError(f"{where}: 'files' is empty")
    if len({f.name for f in files}) != len(files):
        raise ModelNotFoundError(f"{where}: two files share a name")
    return ManifestEntry(
        name=name,
        architecture=raw["architecture"],
        format=raw["format"],
        sources=tuple(raw["sources"]),
        sample_rate=int(raw["sample_rate"]),
        files=files,
        tasks=tuple(raw.get("tasks", ())),
        licence=raw.get("licence", "unspecified"),
        description=raw.get("description", ""),
        homepage=raw.get("homepage", ""),
        config=dict(raw.get("config", {})),
        residual=raw.get("residual"),
        published_quality=raw.get("published_quality", ""),
        published_score=_score(raw.get("published_score"), where),
    )


def _score(raw: Any, where: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ModelNotFoundError(f"{where}: 'published_score' must be a number (dB), got {raw!r}")
    return float(raw)


def _read(text: str, where: str) -> dict[str, ManifestEntry]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelNotFoundError(f"{where}: not valid JSON ({exc})") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ModelNotFoundError(f'{where}: expected {{"models": {{NAME: ENTRY, ...}}}}')
    return {name: _entry(name, raw, where) for name, raw in models.items()}


def load_manifest() -> dict[str, ManifestEntry]:
    """Every published model: the shipped manifest, then the files named by ``$DEMIXER_MANIFEST``."""
    shipped = resources.files("demixer.pretrained") / "manifest.json"
    entries = _read(shipped.read_text(encoding="utf-8"), "demixer/pretrained/manifest.json")
    for part in filter(None, os.environ.get("DEMIXER_MANIFEST", "").split(os.pathsep)):
        path = Path(part).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelNotFoundError(f"DEMIXER_MANIFEST: cannot read {path}: {exc.strerror or exc}") from None
        entries.update(_read(text, str(path)))
    return entries


def manifest_entry(name: str) -> ManifestEntry | None:
    """The entry called ``name``, or None."""
    return load_manifest().get(name)
