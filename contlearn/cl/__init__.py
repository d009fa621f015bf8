"""Classic continual learning: datasets, scenarios, the classifier learner, metrics,
on the one engine and host loop; its strategies are `contlearn.strategies`."""

from contlearn.cl import datasets, metrics, scenarios, schedules
from contlearn.cl.learner import Calls, accuracy_probe, classifier_learner, compile_calls
from contlearn.cl.model import Mlp
from contlearn.cl.task_model import Batch, classifier

__all__ = [
  "Batch",
  "Calls",
  "Mlp",
  "accuracy_probe",
  "classifier",
  "classifier_learner",
  "compile_calls",
  "datasets",
  "metrics",
  "scenarios",
  "schedules",
]
