"""Training: validated configs, losses (L1, multi-resolution STFT, SI-SDR, PIT), the train loop
(EMA, gradient clipping, mixed precision, exact resume) and data-parallel launch via torchrun."""

from ..errors import ConfigError
from .config import TrainConfig, load_config
from .losses import LOSS_NAMES, TrainingLoss, pit_loss
from .trainer import Trainer, TrainResult, train

__all__ = [
    "ConfigError",
    "LOSS_NAMES",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingLoss",
    "load_config",
    "pit_loss",
    "train",
]
