"""What a continual-learning strategy needs of a model: `TaskModel`, pure functions of (params, batch).

A *batch* is any pytree whose leaves lead with the batch axis `[B, ...]`; a
*row* is one slice `[i]` of every leaf. The classic classifier
(`contlearn.cl.classifier`, rows `Batch(x, y, head, task)`) and
the byte LM (`contlearn.learner.sequence_task_model`, rows
`Sequences(tokens, mask, memory)`) are two instances; a user's model becomes
strategy-ready by filling in the same fields:

    loss(params, batch) -> (loss [], aux)          every strategy
    outputs(params, batch) -> float32 [B, *out]    DER (stored), LwF (distilled), MAS
    log_likelihood(params, batch) -> [B]           EWC's Fisher (per-row log p(y | x))
    output_mask(batch) -> bool [B, *out]           MAS: the outputs each row is judged on
    stored(batch) -> batch                         what a replay buffer keeps of a batch
    task_rows(env, task, n, key) -> batch [n]      end of task: rows of the task just learned
    task_units(env, task) -> bool [*out]           LwF: the output units the task trained
    init(key) -> params                            GDumb's retraining from scratch
    classes(batch) -> int32 [B], n_classes         GDumb's class balance (None / 0: no classes)

`env` is the read-only data of the boundary call that ends a task: the
classic scenario (its rows of every task), or, on a stream, the rows of the
phase just finished that the task-end hook hands over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any


class TaskModel(NamedTuple):
  """A model as the strategies see it (see the module docstring for each field).

  Attributes:
    loss: `(params, batch) -> (loss [] float32, aux)`; `aux["ce"]` is the
      batch's cross-entropy as training curves report it; replay strategies
      add `loss` of replayed rows, so it must be a mean over the batch.
    outputs: `(params, batch) -> float32 [B, *out]`, every output unit.
    log_likelihood: `(params, batch) -> float32 [B]`, log-probability of each
      row's targets (a sequence's summed over its scored tokens).
    output_mask: `batch -> bool [B, *out]`.
    stored: `batch -> batch`, the rows a buffer keeps and replays.
    task_rows: `(env, task int32 [], n, key) -> batch` of n rows.
    task_units: `(env, task int32 []) -> bool [*out]`.
    init: `key -> params`.
    empty_batch: `n -> batch` of n zero rows in the stored form, for buffer shapes.
    classes: `batch -> int32 [B]` class of each row, or None.
    n_classes: number of classes (0 without classes).
  """

  loss: Callable[[PyTree, PyTree], tuple[jax.Array, dict]]
  outputs: Callable[[PyTree, PyTree], jax.Array]
  log_likelihood: Callable[[PyTree, PyTree], jax.Array]
  output_mask: Callable[[PyTree], jax.Array]
  stored: Callable[[PyTree], PyTree]
  task_rows: Callable[..., PyTree]
  task_units: Callable[[Any, jax.Array], jax.Array]
  init: Callable[[jax.Array], PyTree]
  empty_batch: Callable[[int], PyTree]
  classes: Callable[[PyTree], jax.Array] | None = None
  n_classes: int = 0

  def out_shape(self, params: PyTree) -> tuple[int, ...]:
    """The shape of one row's outputs, `*out` (traced once, no computation)."""
    return jax.eval_shape(self.outputs, params, self.empty_batch(1)).shape[1:]


def rows_of(rows: PyTree, n: int, key: jax.Array) -> PyTree:
  """n of the rows of `rows` (a batch `[N, ...]`), without replacement when N >= n."""
  total = jax.tree.leaves(rows)[0].shape[0]
  idx = jax.random.permutation(key, total)[jnp.arange(n) % total]
  return jax.tree.map(lambda a: a[idx], rows)
