"""The end of a task on a stream: a host-loop hook that runs a strategy's `end_task`.

A stream has no task ids inside its steps; a task ends where the host says
so, at a block boundary: `TaskEnd(strategy, ended)` asks `ended(loop)` after
every block and, when it returns `(task, env)`, replaces `loop.state` by the
strategy's end of task on `env` (e.g. the rows of the phase just finished,
from which EWC estimates its Fisher), one compiled call (`engine.compile_call`,
the state donated, mapped over lanes), compiled once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from contlearn import engine, loop
from contlearn.cl.strategies.base import Strategy, end_of_task


class TaskEnd(loop.Hook):
  """Runs `strategy.end_task` at the boundaries where `ended(loop)` returns `(task, env)`.

  Args:
    strategy: the learner's strategy.
    ended: `loop -> (task, env)` at a task's last block, else None.
    lanes: the state holds lanes (seeds, hyperparameters) on a leading axis.
  """

  def __init__(self, strategy: Strategy, ended: Callable[[loop.Loop], tuple[int, Any] | None], *, lanes: bool = False):
    self.ended = ended
    self.finish = engine.compile_call(end_of_task(strategy), lanes=lanes)

  def after_block(self, run: loop.Loop) -> None:
    ended = self.ended(run)
    if ended is not None:
      task, env = ended
      run.state = self.finish(run.state, env, jnp.asarray(task, jnp.int32))
