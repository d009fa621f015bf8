"""Per-row parameter importances: Fisher information (EWC) and MAS.

Both average a per-row gradient statistic over the `n` rows of a batch
(rows of the task just learned, from `TaskModel.task_rows`); the rows are
processed in chunks of `chunk` with `vmap`, so memory stays at `chunk`
copies of the parameters. A row is scored alone, as a batch of one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from contlearn.strategies.task_model import TaskModel

PyTree = Any


def mean_per_row(
  grad_fn: Callable[[PyTree, PyTree], PyTree],
  reduce: Callable[[jax.Array], jax.Array],
  params: PyTree,
  rows: PyTree,
  chunk: int,
) -> PyTree:
  """mean_i reduce(grad_fn(params, row_i)) over the rows of `rows` ([n, ...]), `chunk` rows at a time.

  `grad_fn` receives a row as a batch of one (every leaf `[1, ...]`). The
  `n % chunk` rows past the last whole chunk are one more, smaller batch.
  """
  n = jax.tree.leaves(rows)[0].shape[0]
  full = n // chunk * chunk
  per_row = jax.vmap(grad_fn, in_axes=(None, 0))

  def add(acc, batch):
    g = per_row(params, jax.tree.map(lambda a: a[:, None], batch))
    return jax.tree.map(lambda a, gi: a + jnp.sum(reduce(gi), axis=0), acc, g)

  chunks = jax.tree.map(lambda a: a[:full].reshape(full // chunk, chunk, *a.shape[1:]), rows)
  total, _ = jax.lax.scan(lambda acc, c: (add(acc, c), None), jax.tree.map(jnp.zeros_like, params), chunks)
  if full < n:
    total = add(total, jax.tree.map(lambda a: a[full:], rows))
  return jax.tree.map(lambda t: t / n, total)


def fisher(model: TaskModel, params: PyTree, rows: PyTree, chunk: int) -> PyTree:
  """Empirical Fisher diagonal: mean_i (d log p(y_i | x_i) / d theta)^2, one
  term per row (a sequence's log-probability is summed over its tokens)."""

  def grad_fn(p, row):
    return jax.grad(lambda p: model.log_likelihood(p, row)[0])(p)

  return mean_per_row(grad_fn, jnp.square, params, rows, chunk)


def mas(model: TaskModel, params: PyTree, rows: PyTree, chunk: int) -> PyTree:
  """MAS importance: mean_i |d ||f(x_i)||_2^2 / d theta| over the row's judged outputs."""

  def grad_fn(p, row):
    mask = model.output_mask(row)
    return jax.grad(lambda p: jnp.sum(jnp.where(mask, jnp.square(model.outputs(p, row)), 0.0)))(p)

  return mean_per_row(grad_fn, jnp.abs, params, rows, chunk)
