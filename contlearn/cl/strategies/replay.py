"""Rehearsal strategies over a reservoir buffer: ER, DER, DER++ and A-GEM."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from contlearn.cl import buffer as buf_lib
from contlearn.cl.model import Mlp, cross_entropy
from contlearn.cl.strategies import importance
from contlearn.cl.strategies.base import Strategy, task_loss, tree_vdot

PyTree = Any


def _reservoir_after_step(model: Mlp):
  def after_step(sstate, hp, old_params, new_params, grads, batch, aux, key):
    del hp, grads, aux
    out, _ = model.features(old_params, batch.x)
    return new_params, buf_lib.add(sstate, batch.x, batch.y, batch.head, batch.task,
                                   jax.lax.stop_gradient(out), key)
  return after_step


def _buffer_ce(model: Mlp, params: PyTree, rows: buf_lib.Buffer, mask: jax.Array) -> jax.Array:
  return cross_entropy(model.logits(params, rows.x, rows.head), rows.y, mask)


def er(model: Mlp, capacity: int = 500, replay_batch: int = 32) -> Strategy:
  """Experience replay: CE on the batch + CE on `replay_batch` reservoir rows."""
  def loss(params, sstate, hp, batch, key):
    del hp
    ce, aux = task_loss(model, params, batch)
    rows, mask = buf_lib.sample(sstate, replay_batch, key)
    return ce + _buffer_ce(model, params, rows, mask), aux
  return Strategy("er", {}, lambda params, key: buf_lib.empty(
      capacity, model.in_dim, model.out_dim), loss,
      after_step=_reservoir_after_step(model))


def der(model: Mlp, capacity: int = 500, replay_batch: int = 32, alpha: float = 0.3,
        beta: float = 0.5, plus: bool = False) -> Strategy:
  """Dark Experience Replay (Buzzega et al.): alpha * MSE to stored logits.

  DER++ (`plus=True`) adds beta * CE on a second, independent replay sample.
  Logits are of all output units, stored when the row entered the buffer.
  """
  def loss(params, sstate, hp, batch, key):
    k1, k2 = jax.random.split(key)
    ce, aux = task_loss(model, params, batch)
    rows, mask = buf_lib.sample(sstate, replay_batch, k1)
    out, _ = model.features(params, rows.x)
    mse = jnp.sum(jnp.mean(jnp.square(out - rows.logits), axis=-1) * mask) / replay_batch
    total = ce + hp["alpha"] * mse
    if plus:
      rows2, mask2 = buf_lib.sample(sstate, replay_batch, k2)
      total = total + hp["beta"] * _buffer_ce(model, params, rows2, mask2)
    return total, aux
  hp = {"alpha": alpha, **({"beta": beta} if plus else {})}
  return Strategy("derpp" if plus else "der", hp,
                  lambda params, key: buf_lib.empty(capacity, model.in_dim, model.out_dim),
                  loss, after_step=_reservoir_after_step(model))


def agem_project(g: PyTree, g_ref: PyTree) -> PyTree:
  """A-GEM: g - (g.g_ref / g_ref.g_ref) g_ref when g.g_ref < 0, else g."""
  dot = tree_vdot(g, g_ref)
  ref_sq = tree_vdot(g_ref, g_ref)
  coef = jnp.where(dot < 0, dot / jnp.maximum(ref_sq, 1e-12), 0.0)
  return jax.tree.map(lambda a, b: a - coef * b, g, g_ref)


def agem(model: Mlp, capacity: int = 500, per_task: int = 250, ref_batch: int = 256
         ) -> Strategy:
  """A-GEM (Chaudhry et al.): project the gradient so the loss on a reference
  batch from memory does not increase.

  The memory gets `per_task` random rows of each task at the end of the task
  (offered to a reservoir of `capacity`, so it stays uniform over tasks).
  """
  def transform_grads(grads, params, sstate, hp, batch, key):
    del hp, batch
    rows, mask = buf_lib.sample(sstate, ref_batch, key)
    g_ref = jax.grad(lambda p: _buffer_ce(model, p, rows, mask))(params)
    return jax.lax.cond(sstate.size > 0, agem_project, lambda g, r: g, grads, g_ref)

  def end_task(state, scenario, task, key):
    k_rows, k_add = jax.random.split(key)
    x, y = importance.task_rows(scenario, task, per_task, k_rows)
    head = jnp.full((per_task,), scenario.head[task])
    tasks = jnp.full((per_task,), task)
    out, _ = model.features(state.params, x)
    return state.replace(sstate=buf_lib.add(state.sstate, x, y, head, tasks, out, k_add))
  return Strategy("agem", {}, lambda params, key: buf_lib.empty(
      capacity, model.in_dim, model.out_dim),
      lambda params, sstate, hp, batch, key: task_loss(model, params, batch),
      transform_grads=transform_grads, end_task=end_task)

