"""The task schedule of a continual-learning run, as a resumable feed of blocks.

Each task's schedule (int32 [steps_per_task, B], the task of every row of
every step's batch) is cut into blocks of `block_steps` steps, one fixed
shape, so one compiled call serves every block of every task. A position is
the JSON-able `{"task": t, "block": b}`: the next block to learn is block b of
task t; `{"task": T, "block": 0}` is the end. A position at block 0 of a task
t > 0 says task t - 1 has just been learned (see `finished_task`).

Across processes each process feeds only its `rows` of every step's batch
(`sharding.local_lanes`; it draws the whole schedule, a few task ids from a
fixed seed, and keeps its columns), and the global block is assembled with
`engine.place_local_xs`; the position is the same in every process, so every
share ends at the same block and a checkpoint's position resumes on any
number of processes.

>>> from contlearn.cl import schedules
>>> feed = TaskFeed(lambda t: schedules.task(t, 4, 8), n_tasks=2, steps_per_task=4, block_steps=2, rows=range(4, 8))
>>> xs, after = feed.next(feed.start())
>>> xs.shape, after                                  # steps x this process's rows
((2, 4), {'task': 0, 'block': 1})
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
    rows: the rows of every step's batch this process feeds, a contiguous
      range (default: all of them).
  """

  def __init__(
    self,
    schedule: Callable[[int], np.ndarray],
    n_tasks: int,
    steps_per_task: int,
    block_steps: int,
    rows: range | None = None,
  ):
    if block_steps < 1 or steps_per_task % block_steps:
      raise ConfigError(f"block_steps={block_steps} must divide steps_per_task={steps_per_task}")
    self.schedule, self.n_tasks, self.rows = schedule, n_tasks, rows
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
    if self.rows is not None:
      xs = xs[:, self.rows.start : self.rows.stop]
    block += 1
    after = {"task": task + 1, "block": 0} if block == self.blocks_per_task else {"task": task, "block": block}
    return xs, after

  def steps_before(self, position: Position) -> int:
    """Steps learned before `position`."""
    return int(position["task"]) * self.steps_per_task + int(position["block"]) * self.block_steps

  def gather(self, position: Position) -> Position:
    """The position every process holds (each process's rows end together)."""
    return position

  def describe(self) -> str:
    return f"{self.n_tasks} tasks x {self.steps_per_task} steps, in blocks of {self.block_steps} steps"


def finished_task(position: Any) -> int | None:
  """The task whose last block ends at `position`, or None mid-task (or at the start)."""
  task, block = int(position["task"]), int(position["block"])
  return task - 1 if block == 0 and task > 0 else None
