"""Separation models: the common contract, the registry of names and checkpoints."""

from .base import SeparationModel
from .checkpoint import load_checkpoint, save_checkpoint
from .registry import (
    TASK_PREFERENCES,
    TASKS,
    ModelEntry,
    default_model_for,
    list_models,
    load_model,
    model_display_name,
    task_defaults,
)

__all__ = [
    "ModelEntry",
    "SeparationModel",
    "TASKS",
    "TASK_PREFERENCES",
    "default_model_for",
    "task_defaults",
    "list_models",
    "load_checkpoint",
    "load_model",
    "model_display_name",
    "save_checkpoint",
]
