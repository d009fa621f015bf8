"""Continual-learning strategies as pure functions; `make(name, model, **kwargs)`.

`model` is a `TaskModel` (what strategies need of a model, as functions):
`contlearn.cl.classifier(Mlp(...))` for the classic classifier,
`contlearn.learner.sequence_task_model(...)` for the byte LM, or a user's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contlearn.errors import ConfigError
from contlearn.strategies.base import Strategy, end_of_task, naive, strategy_step
from contlearn.strategies.cbp import continual_backprop
from contlearn.strategies.distillation import lwf
from contlearn.strategies.gdumb import gdumb
from contlearn.strategies.regularization import ewc, l2, mas, si
from contlearn.strategies.replay import agem, der, er
from contlearn.strategies.task_end import TaskEnd, compile_end_of_task
from contlearn.strategies.task_model import TaskModel

REGISTRY: dict[str, Callable[..., Strategy]] = {
  "naive": naive,
  "joint": lambda model, **kw: naive(model, data="joint", **kw),
  "cumulative": lambda model, **kw: naive(model, data="cumulative", **kw),
  "l2": l2,
  "ewc": ewc,
  "online_ewc": lambda model, **kw: ewc(model, online=True, **kw),
  "si": si,
  "mas": mas,
  "lwf": lwf,
  "er": er,
  "der": der,
  "derpp": lambda model, **kw: der(model, plus=True, **{"alpha": 0.1, **kw}),
  "agem": agem,
  "gdumb": gdumb,
  "cbp": continual_backprop,
}


def make(name: str, model: TaskModel, **kwargs: Any) -> Strategy:
  """Builds a strategy by name; kwargs are its factory's arguments."""
  if name not in REGISTRY:
    raise ConfigError(f"unknown strategy {name!r}; choose one of {sorted(REGISTRY)}")
  try:
    return REGISTRY[name](model, **kwargs)
  except TypeError as e:
    raise ConfigError(f"strategy {name!r}: bad arguments {sorted(kwargs)}: {e}") from None


__all__ = [
  "REGISTRY",
  "Strategy",
  "TaskEnd",
  "TaskModel",
  "compile_end_of_task",
  "end_of_task",
  "make",
  "strategy_step",
]
