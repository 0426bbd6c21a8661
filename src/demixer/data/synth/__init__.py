"""Synthesis of training material (``demixer data synth``): music stems, TTS speech, noise."""

from collections.abc import Callable
from typing import Any

from .music import synth_music
from .noise import synth_noise
from .speech import synth_speech

KINDS: dict[str, Callable[..., Any]] = {"music": synth_music, "speech": synth_speech, "noise": synth_noise}

__all__ = ["KINDS", "synth_music", "synth_noise", "synth_speech"]
