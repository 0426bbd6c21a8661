"""Exceptions raised by demixer. The library raises; only the CLI turns them into exit codes."""

from __future__ import annotations

from pathlib import Path


class DemixerError(Exception):
    """Base class of every error demixer raises on purpose."""


class AudioError(DemixerError):
    """An input file cannot be used, or an output cannot be written.

    The message always names the file and the reason, on one line.
    """

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(self.reason if path is None else f"{self.path}: {self.reason}")


class OutputError(AudioError):
    """Outputs cannot be written where they were asked for (a file in the way, read-only, no space left):
    a fault that every further input would meet too, so a run stops at it."""


class OptionsError(DemixerError, ValueError):
    """An option value is invalid (bad range, unknown stem, conflicting flags)."""


class ModelNotFoundError(DemixerError, LookupError):
    """No model is registered under that name and no checkpoint exists at that path."""


class OutputExistsError(DemixerError, FileExistsError):
    """An output file already exists and overwriting was not asked for."""


class ConfigError(OptionsError):
    """A model or training configuration is invalid: the message names the setting and what it allows."""


class ChecksumError(DemixerError):
    """A model file's content is not what the manifest says."""


class DownloadError(DemixerError):
    """A model file could not be downloaded."""


class MissingExtraError(DemixerError, ImportError):
    """A command needs an optional part of demixer that is not installed; the message names the extra."""


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type (unless it is one of ours) and its message, white space folded."""
    text = " ".join(str(exc).split())
    if isinstance(exc, DemixerError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds: the check a model or transform
    makes of its settings (unlike ``assert``, it also runs under ``python -O``)."""
    if not condition:
        raise ConfigError(message)
