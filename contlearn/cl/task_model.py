"""The classic classifier as a `TaskModel`: an `Mlp` over rows `Batch(x, y, head, task)`.

>>> from contlearn import strategies
>>> model = Mlp(784, (400, 400), 10)
>>> strategy = strategies.make("ewc", classifier(model))
>>> strategy.name, strategy.hparams
('ewc', {'strength': 1.0})
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from contlearn.cl.model import Mlp, cross_entropy
from contlearn.cl.scenarios import Scenario
from contlearn.strategies.task_model import TaskModel


class Batch(NamedTuple):
  """A training batch.

  Attributes:
    x: float32 [B, D].
    y: int32 [B], label within the row's head.
    head: int32 [B], output head of each row.
    task: int32 [B], task each row came from.
  """

  x: jax.Array
  y: jax.Array
  head: jax.Array
  task: jax.Array


def task_rows(scenario: Scenario, task: jax.Array, n: int, key: jax.Array) -> Batch:
  """n train rows of a task, drawn without replacement when it has >= n rows."""
  count = scenario.train_n[task]
  order = jnp.argsort(
    jax.random.uniform(key, scenario.train_y.shape[1:]) + (jnp.arange(scenario.train_y.shape[1]) >= count)
  )
  idx = order[jnp.arange(n) % order.shape[0]] % jnp.maximum(count, 1)  # n rows, repeating when fewer
  return Batch(*scenario.train_rows(task, idx), jnp.full((n,), scenario.head[task]), jnp.full((n,), task))


def classifier(model: Mlp) -> TaskModel:
  """`model` as a `TaskModel`; outputs are `[B, n_heads, head_size]`, a class is
  an output unit `head * head_size + y`, and the loss's aux holds "hiddens",
  the hidden activations (for continual backprop)."""

  def loss(params, batch: Batch):
    out, hiddens = model.features(params, batch.x)
    ce = cross_entropy(model.select_head(out, batch.head), batch.y)
    return ce, {"ce": ce, "hiddens": hiddens}

  def outputs(params, batch: Batch):
    out, _ = model.features(params, batch.x)
    return out.reshape(out.shape[0], model.n_heads, model.head_size)

  def log_likelihood(params, batch: Batch):
    logp = jax.nn.log_softmax(model.logits(params, batch.x, batch.head))
    return jnp.take_along_axis(logp, batch.y[:, None], axis=1)[:, 0]

  def output_mask(batch: Batch):
    own_head = jnp.arange(model.n_heads)[None, :] == batch.head[:, None]  # [B, H]
    return jnp.broadcast_to(own_head[:, :, None], (*own_head.shape, model.head_size))

  def task_units(scenario: Scenario, task):
    valid = jnp.arange(scenario.train_y.shape[1]) < scenario.train_n[task]
    units = scenario.head[task] * model.head_size + scenario.train_y[task]
    used = jnp.zeros((model.out_dim,), bool).at[units].max(valid)
    return used.reshape(model.n_heads, model.head_size)

  def empty_batch(n):
    zeros = jnp.zeros((n,), jnp.int32)
    return Batch(jnp.zeros((n, model.in_dim), jnp.float32), zeros, zeros, zeros)

  return TaskModel(
    loss=loss,
    outputs=outputs,
    log_likelihood=log_likelihood,
    output_mask=output_mask,
    stored=lambda batch: batch,
    task_rows=task_rows,
    task_units=task_units,
    init=model.init,
    empty_batch=empty_batch,
    classes=lambda batch: batch.head * model.head_size + batch.y,
    n_classes=model.out_dim,
  )
