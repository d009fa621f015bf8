"""Rehearsal strategies over a reservoir buffer: ER, DER, DER++ and A-GEM.

The buffer keeps `model.stored(batch)` rows (for the byte LM: tokens and
mask without the carried memory, so replayed sequences are read from a fresh
memory) and, for DER, the outputs of the stored rows as the model gave them
when they entered the buffer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from contlearn.errors import ConfigError
from contlearn.strategies import buffer as buf_lib
from contlearn.strategies.base import Strategy, tree_vdot
from contlearn.strategies.task_model import TaskModel

PyTree = Any


def _reservoir(model: TaskModel, capacity: int, keep_outputs: bool):
  """(init, after_step) of a buffer that offers every batch's stored rows."""

  def init(params, key):
    del key
    return buf_lib.empty(capacity, model.empty_batch(1), model.out_shape(params) if keep_outputs else None)

  def after_step(sstate, hp, old_params, new_params, grads, batch, aux, key):
    del hp, grads, aux
    rows = model.stored(batch)
    outputs = jax.lax.stop_gradient(model.outputs(old_params, rows)) if keep_outputs else ()
    return new_params, buf_lib.add(sstate, rows, outputs, key)

  return init, after_step


def _replay_loss(model: TaskModel, params: PyTree, rows: buf_lib.Buffer, mask: jax.Array) -> jax.Array:
  """The model's loss on replayed rows; 0 while the buffer is empty (`mask` all 0)."""
  loss, _ = model.loss(params, rows.rows)
  return jnp.where(jnp.any(mask > 0), loss, 0.0)


FILLS = ("reservoir", "task_end")


def _balanced_at_task_end(model: TaskModel, capacity: int):
  """(init, end_task) of a memory filled when a task ends, shared evenly by the tasks so far."""

  def init(params, key):
    del params, key
    return buf_lib.empty(capacity, model.empty_batch(1))

  def end_task(state, env, task, key):
    rows = model.stored(model.task_rows(env, task, capacity, key))
    return state.replace(strategy=buf_lib.rebalanced(state.strategy, task, rows))

  return init, end_task


def er(
  model: TaskModel,
  capacity: int = 500,
  replay_batch: int = 32,
  new_weight: float = 1.0,
  replay_weight: float = 1.0,
  fill: str = "reservoir",
) -> Strategy:
  """Experience replay: `new_weight` x the batch's loss + `replay_weight` x the loss of
  `replay_batch` memory rows (the replay term is 0 while the memory is empty).

  The default is the plain sum; De Lange et al.'s stability-gap runs weigh
  the new batch 0.3 and the memory batch 0.7 (`new_weight=0.3,
  replay_weight=0.7`; their `Lw_new`), the first task included.

  `fill`: "reservoir" offers every batch's rows to a reservoir (the memory
  holds rows of the task being learnt too); "task_end" fills the memory when
  a task ends, with `model.task_rows` of that task, each finished task an
  equal share (`buffer.rebalanced`), as De Lange et al.'s ER does with
  classes: during task t it holds tasks 0..t-1 only, and nothing during
  task 0.
  """
  if new_weight < 0 or replay_weight < 0:
    raise ConfigError(f"er: new_weight and replay_weight must be >= 0, got {new_weight} and {replay_weight}")
  if fill not in FILLS:
    raise ConfigError(f"er: fill={fill!r} must be one of {', '.join(FILLS)}")

  def loss(params, sstate, hp, batch, key):
    del hp
    base, aux = model.loss(params, batch)
    rows, mask = buf_lib.sample(sstate, replay_batch, key)
    return new_weight * base + replay_weight * _replay_loss(model, params, rows, mask), aux

  if fill == "task_end":
    init, end_task = _balanced_at_task_end(model, capacity)
    return Strategy("er", {}, init, loss, end_task=end_task)
  init, after_step = _reservoir(model, capacity, keep_outputs=False)
  return Strategy("er", {}, init, loss, after_step=after_step)


def der(
  model: TaskModel,
  capacity: int = 500,
  replay_batch: int = 32,
  alpha: float = 0.3,
  beta: float = 0.5,
  plus: bool = False,
) -> Strategy:
  """Dark Experience Replay (Buzzega et al.): alpha * MSE to stored outputs.

  DER++ (`plus=True`) adds beta * the loss of a second, independent replay
  sample. Outputs are every output unit (`model.outputs`), stored when the
  row entered the buffer; the MSE is a mean over a row's outputs.
  """
  init, after_step = _reservoir(model, capacity, keep_outputs=True)

  def loss(params, sstate, hp, batch, key):
    k1, k2 = jax.random.split(key)
    base, aux = model.loss(params, batch)
    rows, mask = buf_lib.sample(sstate, replay_batch, k1)
    sq = jnp.square(model.outputs(params, rows.rows) - rows.outputs)
    mse = jnp.sum(jnp.mean(sq.reshape(replay_batch, -1), axis=-1) * mask) / replay_batch
    total = base + hp["alpha"] * mse
    if plus:
      rows2, mask2 = buf_lib.sample(sstate, replay_batch, k2)
      total = total + hp["beta"] * _replay_loss(model, params, rows2, mask2)
    return total, aux

  hp = {"alpha": alpha, **({"beta": beta} if plus else {})}
  return Strategy("derpp" if plus else "der", hp, init, loss, after_step=after_step)


def agem_project(g: PyTree, g_ref: PyTree) -> PyTree:
  """A-GEM: g - (g.g_ref / g_ref.g_ref) g_ref when g.g_ref < 0, else g."""
  dot = tree_vdot(g, g_ref)
  ref_sq = tree_vdot(g_ref, g_ref)
  coef = jnp.where(dot < 0, dot / jnp.maximum(ref_sq, 1e-12), 0.0)
  return jax.tree.map(lambda a, b: a - coef * b, g, g_ref)


def agem(model: TaskModel, capacity: int = 500, per_task: int = 250, ref_batch: int = 256) -> Strategy:
  """A-GEM (Chaudhry et al.): project the gradient so the loss on a reference
  batch from memory does not increase.

  The memory gets `per_task` rows of each task (`model.task_rows`) at the end
  of the task (offered to a reservoir of `capacity`, so it stays uniform over
  tasks).
  """

  def init(params, key):
    del params, key
    return buf_lib.empty(capacity, model.empty_batch(1))

  def transform_grads(grads, params, sstate, hp, batch, key):
    del hp, batch
    rows, mask = buf_lib.sample(sstate, ref_batch, key)
    g_ref = jax.grad(lambda p: _replay_loss(model, p, rows, mask))(params)
    return jax.lax.cond(sstate.size > 0, agem_project, lambda g, r: g, grads, g_ref)

  def end_task(state, env, task, key):
    k_rows, k_add = jax.random.split(key)
    rows = model.stored(model.task_rows(env, task, per_task, k_rows))
    return state.replace(strategy=buf_lib.add(state.strategy, rows, (), k_add))

  return Strategy(
    "agem",
    {},
    init,
    lambda params, sstate, hp, batch, key: model.loss(params, batch),
    transform_grads=transform_grads,
    end_task=end_task,
  )
