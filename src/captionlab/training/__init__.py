# modules whose components are only registered, not re-exported
from captionlab.training import dashboards, external, loggers, schedules  # noqa: F401
from captionlab.training.averaging import WeightAverage
from captionlab.training.callbacks import MetricsHistory
from captionlab.training.losses import CrossEntropyLoss
from captionlab.training.scst import SelfCriticalLoss

__all__ = ["WeightAverage", "MetricsHistory", "CrossEntropyLoss", "SelfCriticalLoss"]
