"""Where downloaded or installed model files live. Never /tmp, never the working directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """``$DEMIXER_CACHE_DIR`` if set, else the platform's user cache dir (``~/.cache/demixer`` on Linux)."""
    env = os.environ.get("DEMIXER_CACHE_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("demixer"))


def offline() -> bool:
    """True when ``DEMIXER_OFFLINE`` is set to a true value: no network access at all."""
    return os.environ.get("DEMIXER_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
