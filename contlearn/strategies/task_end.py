"""The end of a task on the host loop: the one hook that runs a strategy's `end_task`.

A task ends where the host says so, at a block boundary (a stream has no
task ids inside its steps; a classic scenario's feed knows where each task's
schedule stops): `TaskEnd(strategy, ended)` asks `ended(loop)` after every
block and, when it returns `(task, env)`, replaces `loop.state` by the
strategy's end of task on `env` (the scenario; on a stream, the rows of the
phase just finished, from which EWC estimates its Fisher), then calls
`after_task(loop, task)`, where a subclass measures the state the task left
(`contlearn.cl.hooks.ScenarioTaskEnd`: row t of the accuracy matrix). The end
of task is one compiled call (`compile_end_of_task`), compiled once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from contlearn import engine, loop
from contlearn.strategies.base import Strategy, end_of_task


def compile_end_of_task(strategy: Strategy, *, lanes: bool = False) -> Callable[..., Any]:
  """`finish(state, env, task) -> state`: `end_of_task(strategy)` through
  `engine.compile_call` (the state donated, mapped over lanes)."""
  return engine.compile_call(end_of_task(strategy), lanes=lanes)


class TaskEnd(loop.Hook):
  """Runs `strategy.end_task` at the boundaries where `ended(loop)` returns `(task, env)`.

  Args:
    strategy: the learner's strategy.
    ended: `loop -> (task, env)` at a task's last block, else None.
    lanes: the state holds lanes (seeds, hyperparameters) on a leading axis.
  """

  def __init__(self, strategy: Strategy, ended: Callable[[loop.Loop], tuple[int, Any] | None], *, lanes: bool = False):
    self.ended = ended
    self.finish = compile_end_of_task(strategy, lanes=lanes)

  def after_block(self, run: loop.Loop) -> None:
    ended = self.ended(run)
    if ended is not None:
      task, env = ended
      run.state = self.finish(run.state, env, jnp.asarray(task, jnp.int32))
      self.after_task(run, task)

  def after_task(self, run: loop.Loop, task: int) -> None:
    """Called with the state the end of `task` left; nothing here."""
