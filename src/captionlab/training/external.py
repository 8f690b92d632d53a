"""Stable names for the torch and Lightning classes that configs build: optimizers, schedulers,
Lightning's Trainer, its loggers and callbacks (the allow-list covers every config section)."""

import pytorch_lightning as pl
import torch
from pytorch_lightning import callbacks, loggers

from captionlab.registry import register

for _kind, _name, _obj in (
    ("optimizer", "adam", torch.optim.Adam),
    ("optimizer", "adamw", torch.optim.AdamW),
    ("optimizer", "sgd", torch.optim.SGD),
    ("scheduler", "cosine", torch.optim.lr_scheduler.CosineAnnealingLR),
    ("scheduler", "step", torch.optim.lr_scheduler.StepLR),
    ("scheduler", "multistep", torch.optim.lr_scheduler.MultiStepLR),
    ("scheduler", "exponential", torch.optim.lr_scheduler.ExponentialLR),
    ("trainer", "lightning", pl.Trainer),
    ("callback", "model_checkpoint", callbacks.ModelCheckpoint),
    ("callback", "early_stopping", callbacks.EarlyStopping),
    ("callback", "lr_monitor", callbacks.LearningRateMonitor),
    ("logger", "csv", loggers.CSVLogger),
    ("logger", "tensorboard", loggers.TensorBoardLogger),
):
    register(_kind, _name)(_obj)
