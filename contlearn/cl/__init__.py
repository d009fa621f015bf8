"""Classic continual learning: scenarios, strategies, metrics, on the one engine and host loop."""

from contlearn.cl import datasets, metrics, scenarios, schedules, strategies
from contlearn.cl.learner import Calls, accuracy_probe, classifier_learner, compile_calls
from contlearn.cl.model import Mlp

__all__ = [
  "Calls",
  "Mlp",
  "accuracy_probe",
  "classifier_learner",
  "compile_calls",
  "datasets",
  "metrics",
  "scenarios",
  "schedules",
  "strategies",
]
