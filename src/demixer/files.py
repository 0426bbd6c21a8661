"""File-system helpers written once: atomic writes, checksums, and folder walks that follow links.

Every file demixer writes appears whole or not at all: it is written under a hidden temporary
name beside its final name (``.NAME.TOKEN.part``) and renamed over it at the end. A failed write
leaves no partial file behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

NAME_MAX = 255  # bytes in one path component on the file systems demixer writes to (ext4, xfs, btrfs, tmpfs, APFS)
_TOKEN_BYTES = 4
_PART = ".part"


def temp_prefix(path: str | os.PathLike[str]) -> str:
    """The hidden prefix of ``path``'s temporary names: ``.NAME.``, with NAME shortened so that a whole
    temporary name (prefix, a random token and ``.part``) fits in :data:`NAME_MAX` bytes."""
    name = Path(path).name
    room = NAME_MAX - len("..") - 2 * _TOKEN_BYTES - len(_PART)
    encoded = name.encode()
    if len(encoded) > room:
        name = encoded[:room].decode(errors="ignore")
    return f".{name}."


def temp_path(path: str | os.PathLike[str]) -> Path:
    """A fresh hidden temporary name in ``path``'s folder (see :func:`temp_prefix`)."""
    path = Path(path)
    return path.with_name(f"{temp_prefix(path)}{secrets.token_hex(_TOKEN_BYTES)}{_PART}")


def temp_glob(path: str | os.PathLike[str]) -> str:
    """The glob pattern that matches every temporary name of ``path`` (to clean up after a crash)."""
    return f"{temp_prefix(path)}*{_PART}"


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; it is renamed over ``path`` when the block
    ends without error, and removed when it raises.

    Examples:
        >>> with atomic_path("out/result.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    target = Path(path)
    tmp = temp_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in ``chunk``-byte blocks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def walk(root: str | os.PathLike[str]) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk`` that follows symbolic links to folders, each real folder once (no link loops).

    Yields ``(folder, subfolder names, file names)`` top-down with the names sorted; like
    ``os.walk``, a caller may prune ``subfolder names`` in place. Links to files are listed as files.
    """
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames.sort()
        filenames.sort()
        yield Path(dirpath), dirnames, filenames


def output_fault(folder: str | os.PathLike[str], exc: BaseException | None = None) -> str | None:
    """Why nothing at all can be written under ``folder`` (read-only file system, no space left), or None.

    Looks at ``exc``'s errno when it has one, else at the free space of the file system (libsndfile
    reports a full disk as "System error." with no errno).
    """
    code = getattr(exc, "errno", None)
    if code == errno.EROFS:
        return "read-only file system"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    try:
        free = shutil.disk_usage(_nearest_existing(Path(folder))).free
    except OSError:
        return None
    return f"no space left on the device (only {free // 1024} KiB free)" if free < 1 << 20 else None


def check_output_folder(folder: str | os.PathLike[str]) -> None:
    """Raise :class:`~demixer.errors.OutputError` when ``folder`` cannot hold outputs: it is a file, it
    lies under a file, or its nearest existing folder is not writable (read-only mount, permissions)."""
    target = Path(folder)
    existing = _nearest_existing(target)
    if not existing.is_dir():
        where = "is a file" if existing == target else f"is under {existing}, which is a file"
        raise OutputError(target, f"cannot write outputs here: it {where}, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        probe = os.statvfs(existing)
        why = "a read-only file system" if probe.f_flag & os.ST_RDONLY else "not writable (permission denied)"
        raise OutputError(target, f"cannot write outputs here: {existing} is {why}")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (what a folder still to be made would be created in)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
