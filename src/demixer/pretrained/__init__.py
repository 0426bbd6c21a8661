"""The only code allowed to touch the network: the manifest of published checkpoints, the model
cache (checksums, resumable downloads) and offline mode."""

from .cache import cache_dir, offline
from .manifest import FileSpec, ManifestEntry, load_manifest, manifest_entry
from .store import ChecksumError, DownloadError, FileStatus, fetch, model_dir, remove, status, verify

__all__ = [
    "ChecksumError",
    "DownloadError",
    "FileSpec",
    "FileStatus",
    "ManifestEntry",
    "cache_dir",
    "fetch",
    "load_manifest",
    "manifest_entry",
    "model_dir",
    "offline",
    "remove",
    "status",
    "verify",
]
