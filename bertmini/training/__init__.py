"""The training engine shared by Parts II and III (chapter 8): one Trainer, its config, state, optimizer,
schedules, precision, time budget, batching and distributed set-up."""
from bertmini.training.curves import plot_curves
from bertmini.training.train_config import TrainConfig
from bertmini.training.trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "plot_curves"]
