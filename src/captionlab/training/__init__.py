from captionlab.training import schedules  # noqa: F401  (registers the schedules)
from captionlab.training.averaging import WeightAverage
from captionlab.training.callbacks import MetricsHistory
from captionlab.training.losses import CrossEntropyLoss
from captionlab.training.scst import SelfCriticalLoss

__all__ = ["WeightAverage", "MetricsHistory", "CrossEntropyLoss", "SelfCriticalLoss"]
