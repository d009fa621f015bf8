"""The task schedule of a continual-learning run, as a resumable feed of blocks.

Each task's schedule (int32 [steps_per_task, B], the task of every row of
every step's batch) is cut into blocks of `block_steps` steps, one fixed
shape, so one compiled call serves every block of every task. A position is
the JSON-able `{"task": t, "block": b}`: the next block to learn is block b of
task t; `{"task": T, "block": 0}` is the end. A position at block 0 of a task
t > 0 says task t - 1 has just been learned (see `finished_task`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from contlearn.errors import ConfigError

Position = dict[str, int]


class TaskFeed:
  """Blocks of each task's schedule in turn.

  Args:
    schedule: `schedule(task) -> int32 [steps_per_task, B]`, deterministic
      (a resumed run draws it again).
    n_tasks: tasks in the run.
    steps_per_task: steps of each task.
    block_steps: steps per block; divides `steps_per_task`.
  """

  def __init__(self, schedule: Callable[[int], np.ndarray], n_tasks: int, steps_per_task: int, block_steps: int):
    if block_steps < 1 or steps_per_task % block_steps:
      raise ConfigError(f"block_steps={block_steps} must divide steps_per_task={steps_per_task}")
    self.schedule, self.n_tasks = schedule, n_tasks
    self.steps_per_task, self.block_steps = steps_per_task, block_steps
    self.blocks_per_task = steps_per_task // block_steps
    self._cached: tuple[int, np.ndarray] | None = None

  def start(self) -> Position:
    return {"task": 0, "block": 0}

  def _task_schedule(self, task: int) -> np.ndarray:
    if self._cached is None or self._cached[0] != task:
      sched = np.asarray(self.schedule(task), np.int32)
      if sched.shape[0] != self.steps_per_task:
        raise ConfigError(
          f"the schedule of task {task} has {sched.shape[0]} steps, not steps_per_task={self.steps_per_task}"
        )
      self._cached = (task, sched)
    return self._cached[1]

  def next(self, position: Position) -> tuple[np.ndarray | None, Position]:
    task, block = int(position["task"]), int(position["block"])
    if task >= self.n_tasks:
      return None, position
    xs = self._task_schedule(task)[block * self.block_steps : (block + 1) * self.block_steps]
    block += 1
    after = {"task": task + 1, "block": 0} if block == self.blocks_per_task else {"task": task, "block": block}
    return xs, after

  def steps_before(self, position: Position) -> int:
    """Steps learned before `position`."""
    return int(position["task"]) * self.steps_per_task + int(position["block"]) * self.block_steps

  def describe(self) -> str:
    return f"{self.n_tasks} tasks x {self.steps_per_task} steps, in blocks of {self.block_steps} steps"


def finished_task(position: Any) -> int | None:
  """The task whose last block ends at `position`, or None mid-task (or at the start)."""
  task, block = int(position["task"]), int(position["block"])
  return task - 1 if block == 0 and task > 0 else None
