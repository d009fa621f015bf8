"""Classic continual learning: scenarios, strategies, metrics, compiled per task."""

from contlearn.cl import datasets, metrics, scenarios, schedules, strategies
from contlearn.cl.learner import Curve, LearnerState, Trainer
from contlearn.cl.model import Mlp

__all__ = ["Curve", "LearnerState", "Mlp", "Trainer", "datasets", "metrics", "scenarios",
           "schedules", "strategies"]
