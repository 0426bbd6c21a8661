"""The model store: published checkpoint files in the cache, downloaded once, verified always.

Layout: ``<cache_dir>/checkpoints/<model>/<file>``, with ``<file>.sha256`` beside each verified file
(its whole digest, size and mtime: a later load re-hashes only when the file changed) and
``<file>.part`` while a download is under way (a later attempt resumes it with an HTTP range
request). A download whose checksum or size is wrong is deleted: nothing unverified is left
behind. With ``DEMIXER_OFFLINE=1`` (``--offline``) nothing touches the network; a missing file is
an error that names the URL and the exact path to put it at.

This module and :mod:`.download` are the only code in demixer that opens network connections.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ChecksumError, DownloadError, ModelNotFoundError
from ..files import sha256_of, write_text_atomic
from .cache import cache_dir, offline
from .manifest import FileSpec, ManifestEntry

log = logging.getLogger("demixer")


def model_dir(entry: ManifestEntry) -> Path:
    return cache_dir() / "checkpoints" / entry.name


def _matches(spec: FileSpec, digest: str) -> bool:
    if spec.sha256:
        return digest == spec.sha256
    if spec.sha256_prefix:
        return digest.startswith(spec.sha256_prefix)
    return True


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _record(path: Path, digest: str) -> None:
    st = path.stat()
    write_text_atomic(_sidecar(path), json.dumps({"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))


def _recorded(path: Path) -> str | None:
    """The digest recorded for ``path`` when the file is unchanged since (size and mtime), else None."""
    try:
        rec = json.loads(_sidecar(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return None
    if rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
        return rec.get("sha256")
    return None


def verify(spec: FileSpec, path: Path, force: bool = False) -> str:
    """Check a file against its spec (size, digest) and record its digest; return the digest.

    A file whose digest was recorded (pinned) at its first download must still have that digest.
    The file is re-hashed when it changed since its digest was recorded, or with ``force``.

    Raises:
        ChecksumError: naming the file, what was expected and what was found.
    """
    digest = None if force else _recorded(path)
    pinned = None
    if digest is None:
        try:
            pinned = json.loads(_sidecar(path).read_text()).get("sha256")
        except (OSError, ValueError):
            pinned = None
        digest = sha256_of(path)
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise ChecksumError(f"{path}: {size} bytes, the manifest says {spec.size}")
    if not _matches(spec, digest):
        want = spec.sha256 or f"{spec.sha256_prefix}..."
        raise ChecksumError(f"{path}: sha256 {digest} does not match the manifest ({want})")
    if pinned and not spec.sha256 and pinned != digest:
        raise ChecksumError(f"{path}: sha256 {digest} differs from the digest pinned at its first download ({pinned})")
    _record(path, digest)
    return digest


@contextmanager
def _lock(path: Path):
    """An exclusive lock per file, so two processes never download the same file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as handle:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: no advisory locks, same-process safety only
            pass
        yield


@dataclass
class FileStatus:
    spec: FileSpec
    path: Path
    present: bool
    verified: bool  # a digest is recorded and the file is unchanged since


def status(entry: ManifestEntry) -> list[FileStatus]:
    """Where each file of ``entry`` is and whether it is there (no hashing, no network)."""
    rows = []
    for spec in entry.files:
        path = model_dir(entry) / spec.name
        digest = _recorded(path) if path.is_file() else None
        rows.append(FileStatus(spec, path, path.is_file(), digest is not None and _matches(spec, digest)))
    return rows


def _missing_message(entry: ManifestEntry, missing: list[FileStatus], why: str) -> str:
    lines = [f"{entry.name}: {why}; {len(missing)} file(s) missing from the model cache. Put each file at:"]
    lines += [f"  {row.path}  <- {row.spec.url}" for row in missing]
    lines.append(
        f"or run `demixer models download {entry.name}` with network access (DEMIXER_CACHE_DIR moves the cache)."
    )
    return "\n".join(lines)


def fetch(entry: ManifestEntry, *, offline_mode: bool | None = None, progress: bool = True) -> dict[str, Path]:
    """The verified local files of ``entry`` (``{file name: path}``), downloading what is missing.

    Args:
        entry: a manifest entry.
        offline_mode: never touch the network (default: ``$DEMIXER_OFFLINE``).
        progress: show a progress bar while downloading.

    Raises:
        ModelNotFoundError: offline and a file is missing (the message says where to put it).
        DownloadError: the download failed (partial data is kept for a resume).
        ChecksumError: a file is not what the manifest says (a fresh download is deleted).
    """
    from .download import download, free_space_ok

    is_offline = offline() if offline_mode is None else offline_mode
    rows = status(entry)
    missing = [row for row in rows if not row.present]
    if missing and is_offline:
        raise ModelNotFoundError(_missing_message(entry, missing, "offline (DEMIXER_OFFLINE / --offline)"))
    paths: dict[str, Path] = {}
    for row in rows:
        with _lock(row.path):
            if not row.path.is_file():  # another process may have finished it while we waited
                part = row.path.with_name(row.path.name + ".part")
                have = part.stat().st_size if part.exists() else 0
                if row.spec.size and not free_space_ok(row.path.parent, row.spec.size - have):
                    raise DownloadError(
                        f"{entry.name}/{row.spec.name}: not enough free disk space in {row.path.parent} "
                        f"for {(row.spec.size - have) / 2**20:.0f} MiB (DEMIXER_CACHE_DIR moves the cache)"
                    )
                try:
                    download(
                        row.spec.url, part, row.spec.size, progress=progress, label=f"{entry.name}/{row.spec.name}"
                    )
                except DownloadError as exc:
                    raise DownloadError(f"{exc}\n" + _missing_message(entry, [row], "download failed")) from None
                digest = sha256_of(part)
                size = part.stat().st_size
                if not _matches(row.spec, digest) or (row.spec.size is not None and size != row.spec.size):
                    part.unlink(missing_ok=True)
                    want = row.spec.sha256 or (f"{row.spec.sha256_prefix}..." if row.spec.sha256_prefix else "?")
                    raise ChecksumError(
                        f"{entry.name}/{row.spec.name}: downloaded {size} bytes with sha256 {digest}, "
                        f"expected {want}"
                        + (f" ({row.spec.size} bytes)" if row.spec.size else "")
                        + f"; the download was deleted (from {row.spec.url})"
                    )
                os.replace(part, row.path)
                _record(row.path, digest)
                if not row.spec.sha256:
                    log.warning(
                        "%s/%s: sha256 %s pinned (the manifest gives %s)",
                        entry.name,
                        row.spec.name,
                        digest,
                        "only the prefix " + row.spec.sha256_prefix if row.spec.sha256_prefix else "no digest",
                    )
            verify(row.spec, row.path)
        paths[row.spec.name] = row.path
    return paths


def remove(entry: ManifestEntry) -> list[Path]:
    """Delete the cached files of ``entry`` (and their records); returns what was removed."""
    removed = []
    folder = model_dir(entry)
    for spec in entry.files:
        for p in (
            folder / spec.name,
            _sidecar(folder / spec.name),
            folder / f"{spec.name}.part",
            folder / f"{spec.name}.lock",
            folder / f"{spec.name}.safetensors",
        ):  # the last: a converted copy some formats keep (published.py)
            if p.exists():
                p.unlink()
                removed.append(p)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return removed
