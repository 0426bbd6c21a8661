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


class OptionsError(DemixerError, ValueError):
    """An option value is invalid (bad range, unknown stem, conflicting flags)."""


class ModelNotFoundError(DemixerError, LookupError):
    """No model is registered under that name and no checkpoint exists at that path."""


class OutputExistsError(DemixerError, FileExistsError):
    """An output file already exists and overwriting was not asked for."""


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type (unless it is one of ours) and its message, white space folded."""
    text = " ".join(str(exc).split())
    if isinstance(exc, DemixerError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
