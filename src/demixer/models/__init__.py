"""Separation models: the common contract, the registry of names and checkpoints."""

from .base import SeparationModel
from .checkpoint import load_checkpoint, save_checkpoint
from .registry import TASK_DEFAULTS, TASKS, ModelEntry, default_model_for, list_models, load_model, model_display_name

__all__ = [
    "ModelEntry", "SeparationModel", "TASKS", "TASK_DEFAULTS", "default_model_for", "list_models", "load_checkpoint",
    "load_model", "model_display_name", "save_checkpoint",
]
