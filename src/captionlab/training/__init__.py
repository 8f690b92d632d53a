from captionlab.training.callbacks import MetricsHistory
from captionlab.training.losses import CrossEntropyLoss
from captionlab.training.module import CaptionModule

__all__ = ["MetricsHistory", "CrossEntropyLoss", "CaptionModule"]
