"""Data: the bundled example (synthesised here); datasets and synthesis for training come later."""

from .example import make_example

__all__ = ["make_example"]
