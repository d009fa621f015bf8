"""Learning from generated tasks: a fresh batch at every step, a pure function of (seed, step).

    StepFeed: position = steps done --next--> block of `block` steps --> engine.compile'd call
                                                                      |
                                  LossLog (metrics.jsonl, progress) <-+-> run_folder.Checkpoint

Recall tasks (MQAR, needle in a haystack) train on independent sequences
drawn afresh at every step. Their feed's position is the step count and its
blocks are made from `(seed, step)` alone, so a resumed run reads exactly
the batches the uninterrupted run would have. A task whose batches are cheap
to draw on the device passes step indices as the block and makes each batch
inside the compiled step (`indexed`); one drawn on the host (text slices)
passes the batches themselves; `contlearn.run_folder.fit` trains on either.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from contlearn.block_log import BlockLog
from contlearn.engine import Learner
from contlearn.errors import ConfigError


class ScoredChunk(NamedTuple):
  """One step of independent sequences whose loss counts only some targets.

  Attributes:
    tokens: [B, T + 1] int32; the model reads `tokens[:, :-1]`.
    mask: [B, T] bool, real input tokens (all True for full-length sequences).
    scored: [B, T] bool, the targets `tokens[:, 1:]` the loss counts.
  """

  tokens: Any
  mask: Any
  scored: Any


class StepFeed:
  """A feed of `steps` steps in blocks of `block`; position = steps done (an int).

  `make(first, n)` returns the block of steps `first .. first + n - 1`
  (leading axis n); it must depend on nothing but its arguments.
  """

  def __init__(self, steps: int, block: int, make: Callable[[int, int], Any], name: str = "generated"):
    if block < 1 or steps % block:
      raise ConfigError(f"steps={steps} must be a positive multiple of the block of {block} steps per compiled call")
    self.steps, self.block, self.make, self.name = steps, block, make, name

  def start(self) -> int:
    return 0

  def next(self, position: int) -> tuple[Any, int]:
    if position >= self.steps:
      return None, position
    return self.make(position, self.block), position + self.block

  def describe(self) -> str:
    return f"{self.name} ({self.steps} steps)"


def step_indices(first: int, n: int) -> np.ndarray:
  """The block of an `indexed` learner: `[n]` int32 step numbers."""
  return np.arange(first, first + n, dtype=np.int32)


def indexed(learner: Learner, batch_at: Callable[[Any], Any]) -> Learner:
  """`learner` fed `batch_at(i)` at a step whose block entry is the step number `i` ([] int32)."""
  return Learner(learner.init, lambda state, i, env: learner.step(state, batch_at(i), env))


class LossLog(BlockLog):
  """Per-step training loss (`nll / count`), logged per block; the last `keep` steps kept.

  Writes `path` (JSON lines: block, step, the block's mean loss, and the
  mean and largest global norm of its steps' gradients before any clipping;
  one value per lane with lanes) and, with `progress`, prints the loss of
  the last `keep` steps about five times per run.

  >>> from types import SimpleNamespace
  >>> log = LossLog(pathlib.Path("unused.jsonl"), keep=2, label="demo", total_steps=4, progress=False)
  >>> two_lanes = SimpleNamespace(  # [lanes, steps of the block]
  ...   nll=np.array([[4.0, 2.0], [6.0, 6.0]]), count=np.array([[2.0, 2.0], [2.0, 3.0]]),
  ...   grad_norm=np.array([[0.5, 1.5], [3.0, 1.0]]))
  >>> log.record(1, two_lanes)
  {'loss': [1.5, 2.5], 'grad_norm': [1.0, 2.0], 'grad_norm_max': [1.5, 3.0]}
  """

  def __init__(self, path: pathlib.Path, keep: int, label: str, total_steps: int, progress: bool):
    super().__init__(path, label, total_steps, progress)
    self.keep = keep
    self.recent: np.ndarray | None = None  # [..., <= keep] float64

  def record(self, block, metrics) -> dict[str, Any]:
    loss = np.asarray(metrics.nll, np.float64) / np.maximum(np.asarray(metrics.count, np.float64), 1.0)
    joined = loss if self.recent is None else np.concatenate([self.recent, loss], axis=-1)
    self.recent = joined[..., -self.keep :]
    grad_norm = np.asarray(metrics.grad_norm, np.float64)
    return {
      "loss": np.mean(loss, axis=-1).tolist(),
      "grad_norm": np.mean(grad_norm, axis=-1).tolist(),
      "grad_norm_max": np.max(grad_norm, axis=-1).tolist(),
    }

  def describe(self, units: int, record: dict[str, Any]) -> str:
    return f"step {units}: loss {np.round(self.tail(), 3).tolist()}"

  def tail(self) -> np.ndarray:
    """Mean loss of the last `keep` steps ([] or [lanes])."""
    return np.mean(self.recent, axis=-1)

  def meta(self) -> dict[str, Any]:
    return {"recent_loss": None if self.recent is None else self.recent.tolist()}

  def restore(self, meta: dict[str, Any]) -> None:
    super().restore(meta)
    saved = meta["recent_loss"]
    self.recent = None if saved is None else np.asarray(saved, np.float64)


def loss_windows(records: list[dict[str, Any]], every: int) -> list[dict[str, Any]]:
  """A `LossLog`'s records summed up over windows of `every` steps (steps 1..every, every+1..2*every, ...):
  per window, the first and last step, and per lane the mean loss, the mean gradient norm and the largest one.
  A window holds the blocks whose last step falls in it; blocks of equal length give the mean of its steps.

  >>> records = [{"step": s, "loss": [s / 8], "grad_norm": [1.0 + s], "grad_norm_max": [2.0 * s]} for s in (2, 4, 6)]
  >>> for window in loss_windows(records, 4):
  ...   print(window)
  {'first': 1, 'last': 4, 'loss': [0.375], 'grad_norm': [4.0], 'grad_norm_max': [8.0]}
  {'first': 5, 'last': 8, 'loss': [0.75], 'grad_norm': [7.0], 'grad_norm_max': [12.0]}
  """
  if every < 1:
    raise ConfigError(f"every={every} must be >= 1 steps")
  windows: dict[int, list[dict[str, Any]]] = {}
  for record in records:
    windows.setdefault((record["step"] - 1) // every, []).append(record)

  def mean(rows: list[dict[str, Any]], key: str) -> list[float]:
    return np.mean([r[key] for r in rows], axis=0).tolist()

  return [
    {
      "first": w * every + 1,
      "last": (w + 1) * every,
      "loss": mean(rows, "loss"),
      "grad_norm": mean(rows, "grad_norm"),
      "grad_norm_max": np.max([r["grad_norm_max"] for r in rows], axis=0).tolist(),
    }
    for w, rows in sorted(windows.items())
  ]
