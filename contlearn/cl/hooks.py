"""The hooks of a continual-learning run on the host loop (`contlearn.loop`).

  ScenarioTaskEnd  after a task's last block: the strategy's end of task
                   (a `strategies.TaskEnd`), then the accuracy on every
                   task, row t of the accuracy matrix R (every lane's,
                   gathered where lanes are split over processes);
  Settle           across processes, waits for each block before the next
                   block's agreement;
  EvalLog          the in-call evaluations (every `eval_every` steps): the
                   accuracy trajectory, `metrics.jsonl` (one record per
                   evaluation, per lane), TensorBoard scalars and the
                   progress bar.

Both put what they gathered into each checkpoint's metadata and take it back
on resume, so a resumed run ends with the same matrix and trajectory.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tqdm
from jax.experimental import multihost_utils

from contlearn import loop
from contlearn.cl.feed import TaskFeed, finished_task
from contlearn.processes import is_writer
from contlearn.run_log import append_jsonl, read_jsonl, write_atomic
from contlearn.strategies.base import Strategy
from contlearn.strategies.task_end import TaskEnd
from contlearn.tensorboard import ScalarWriter, truncate_events


class ScenarioTaskEnd(TaskEnd):
  """The boundary between a scenario's tasks: the strategy's `end_task` (as
  every `TaskEnd`), then the after-task evaluation.

  Args:
    strategy: the learner's strategy.
    evaluate: `(state, scenario) -> accuracy [L, T]` (`Calls.evaluate`).
    feed: the run's feed (where each task ends).
    eval_every: steps between the in-call evaluations.
    lanes: the state holds lanes on a leading axis.

  Attributes:
    rows: per learned task t, the accuracy on every task after it, [L, T].
    ends: per learned task, the evaluations taken up to its end (the
      trajectory index of the first evaluation after it).
  """

  def __init__(
    self, strategy: Strategy, evaluate: Callable[..., Any], feed: TaskFeed, eval_every: int, *, lanes: bool = False
  ):
    super().__init__(strategy, self._finished, lanes=lanes)
    self.evaluate, self.feed, self.eval_every = evaluate, feed, eval_every
    self.rows: list[np.ndarray] = []
    self.ends: list[int] = []

  @staticmethod
  def _finished(run: loop.Loop) -> tuple[int, Any] | None:
    task = finished_task(run.position)
    return None if task is None else (task, run.env)

  def after_task(self, run: loop.Loop, task: int) -> None:
    # every lane's row, also where the lanes are split over processes
    self.rows.append(np.asarray(multihost_utils.process_allgather(self.evaluate(run.state, run.env), tiled=True)))
    self.ends.append(self.feed.steps_before(run.position) // self.eval_every)

  def meta(self) -> dict[str, Any]:
    return {"rows": [r.tolist() for r in self.rows], "ends": list(self.ends)}

  def restore(self, meta: dict[str, Any]) -> None:
    self.rows = [np.asarray(r, np.float32) for r in meta["rows"]]
    self.ends = [int(e) for e in meta["ends"]]


class Settle(loop.Hook):
  """Waits for each block (its metrics and finiteness check) before the next block's agreement.

  Across processes the agreement (`processes.agree`) is a collective, as are
  a split block's own; XLA's CPU runtime runs a program as soon as its inputs
  are ready, so without this wait the agreement of one process may pair with
  a block's collective in another. Placed first among a multi-process run's hooks.
  """

  def after_block(self, run: loop.Loop) -> None:
    run.settle()


class EvalLog(loop.Hook):
  """The trajectory of evaluations, `metrics.jsonl`, TensorBoard and progress.

  One `metrics.jsonl` record per evaluation:
    {"evaluation": 7, "step": 350, "task": 3, "loss": [L], "acc": [L][T]}
  (`loss`: mean training cross-entropy of each lane since the previous
  evaluation; `acc`: each lane's accuracy on every task). TensorBoard gets
  the lane means `loss` and `acc/task_<j>` against the step.

  Attributes:
    trajectory: per evaluation, the accuracy of each lane on every task [L, T].
  """

  def __init__(self, out: pathlib.Path, feed: TaskFeed, eval_every: int, batch: int, progress: bool, name: str):
    self.path = out / "metrics.jsonl"
    self.feed, self.eval_every = feed, eval_every
    self.trajectory: list[np.ndarray] = []
    self.events = out / "tensorboard"
    self.writer: ScalarWriter | None = None
    total = feed.n_tasks * feed.steps_per_task * batch
    self.bar_options = dict(
      total=total,
      unit="ex",
      unit_scale=True,
      desc=name,
      disable=not (progress and is_writer()),
      file=sys.stderr,
      dynamic_ncols=True,
    )
    self.bar = tqdm.tqdm(disable=True)  # opens when the run starts (not before a refused resume)
    self.started = time.perf_counter()
    self.first_block_s: float | None = None
    self._steady = (self.started, 0)  # (time, examples) after the first block

  def on_start(self, run: loop.Loop) -> None:
    """Continues the log of a resumed run: records and events past the trajectory are dropped."""
    if is_writer():  # the other processes of a run write nothing
      if self.path.exists():
        kept = read_jsonl(self.path)[: len(self.trajectory)]
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
      truncate_events(self.events, len(self.trajectory) * self.eval_every)
      self.writer = ScalarWriter(self.events)
    self.bar = tqdm.tqdm(initial=run.units, **self.bar_options)

  def on_metrics(self, run, block, units, new_units, metrics) -> None:
    ce, acc = metrics  # [L, S], [L, S // eval_every, T]
    lanes, evals = acc.shape[:2]
    loss = ce.reshape(lanes, evals, self.eval_every).mean(-1)
    for i in range(evals):
      self.trajectory.append(acc[:, i])
      n = len(self.trajectory)
      step = n * self.eval_every
      record = {
        "evaluation": n,
        "step": step,
        "task": (step - 1) // self.feed.steps_per_task,
        "loss": loss[:, i].tolist(),
        "acc": acc[:, i].tolist(),
      }
      append_jsonl(self.path, record)
      if self.writer is not None:
        self.writer.add_scalar("loss", float(loss[:, i].mean()), step)
        for j, a in enumerate(acc[:, i].mean(0)):
          self.writer.add_scalar(f"acc/task_{j}", float(a), step)
    if self.writer is not None:
      self.writer.flush()
    now = time.perf_counter()
    if self.first_block_s is None:
      self.first_block_s, self._steady = now - self.started, (now, 0)
    else:
      self._steady = (self._steady[0], self._steady[1] + new_units)
    task = record["task"]
    self.bar.set_postfix(task=task, acc_seen=f"{acc[:, -1, : task + 1].mean():.3f}")
    self.bar.update(new_units)

  def examples_per_s(self) -> float:
    """Examples (per lane) learned per second, leaving out the first block (compilation)."""
    since, examples = self._steady
    elapsed = time.perf_counter() - since
    return examples / elapsed if examples and elapsed > 0 else 0.0

  def meta(self) -> dict[str, Any]:
    return {"trajectory": [a.tolist() for a in self.trajectory]}

  def restore(self, meta: dict[str, Any]) -> None:
    self.trajectory = [np.asarray(a, np.float32) for a in meta["trajectory"]]

  def close(self) -> None:
    self.bar.close()
    if self.writer is not None:
      self.writer.close()
