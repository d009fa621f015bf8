"""Per-sample parameter importances: Fisher information (EWC) and MAS.

Both average a per-sample gradient statistic over `n` rows of a task; the
rows are processed in chunks of `chunk` with `vmap`, so memory stays at
`chunk` copies of the parameters.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from contlearn.cl.model import Mlp
from contlearn.cl.scenarios import Scenario

PyTree = Any


def task_rows(scenario: Scenario, task: jax.Array, n: int, key: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
  """n rows of a task drawn without replacement when it has >= n rows: x [n, D], y [n]."""
  count = scenario.train_n[task]
  order = jnp.argsort(jax.random.uniform(key, scenario.train_y.shape[1:])
                      + (jnp.arange(scenario.train_y.shape[1]) >= count))
  idx = order[:n] % jnp.maximum(count, 1)
  return scenario.train_x[task, idx], scenario.train_y[task, idx]


def mean_per_sample(grad_fn: Callable[[PyTree, jax.Array, jax.Array], PyTree],
                    reduce: Callable[[jax.Array], jax.Array], params: PyTree,
                    x: jax.Array, y: jax.Array, chunk: int) -> PyTree:
  """mean_i reduce(grad_fn(params, x_i, y_i)), chunked; x [n, D] with n % chunk == 0."""
  n = x.shape[0]
  xs = x.reshape(n // chunk, chunk, *x.shape[1:])
  ys = y.reshape(n // chunk, chunk)

  def body(acc, xy):
    g = jax.vmap(grad_fn, in_axes=(None, 0, 0))(params, *xy)
    return jax.tree.map(lambda a, gi: a + jnp.sum(reduce(gi), axis=0), acc, g), None

  total, _ = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, params), (xs, ys))
  return jax.tree.map(lambda t: t / n, total)


def fisher(model: Mlp, params: PyTree, x: jax.Array, y: jax.Array, head: jax.Array,
           chunk: int) -> PyTree:
  """Empirical Fisher diagonal: mean_i (d log p(y_i | x_i) / d theta)^2."""
  def grad_fn(p, xi, yi):
    logp = lambda p: jax.nn.log_softmax(model.logits(p, xi[None], head[None]))[0, yi]
    return jax.grad(logp)(p)
  return mean_per_sample(grad_fn, jnp.square, params, x, y, chunk)


def mas(model: Mlp, params: PyTree, x: jax.Array, y: jax.Array, head: jax.Array,
        chunk: int) -> PyTree:
  """MAS importance: mean_i |d ||f(x_i)||_2^2 / d theta| over the task's head."""
  def grad_fn(p, xi, yi):
    del yi
    return jax.grad(lambda p: jnp.sum(jnp.square(model.logits(p, xi[None], head[None]))))(p)
  return mean_per_sample(grad_fn, jnp.abs, params, x, y, chunk)
