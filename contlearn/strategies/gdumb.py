"""GDumb (Prabhu et al.): a greedy class-balanced memory, and a model
retrained from scratch on the memory alone at the end of each task.

The stream itself is not learned from (the step's loss is zero). A class is
`model.classes(row)` (the classifier's: an output unit, `head * head_size +
label`); a model without classes (`n_classes == 0`, e.g. a byte LM) has no
GDumb. The retraining is itself a learner on the engine
(`retraining_learner`: fresh parameters, each step a batch drawn from the
memory, which is its env), advanced by `engine.scan` inside the end of task.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from contlearn import engine
from contlearn.errors import ConfigError
from contlearn.state import LearnerState, new_state
from contlearn.strategies import buffer
from contlearn.strategies.base import Strategy
from contlearn.strategies.task_model import TaskModel

PyTree = Any


class GdumbState(NamedTuple):
  """Memory rows (valid below `size`) and the count of each class in it."""

  rows: PyTree  # the model's stored rows, every leaf [K, ...]
  unit: jax.Array  # int32 [K], class of each row
  count: jax.Array  # int32 [n_classes]
  size: jax.Array  # int32 []


def offer(mem: GdumbState, row: PyTree, unit: jax.Array, key: jax.Array) -> GdumbState:
  """Offers one row (every leaf without the batch axis) of class `unit`: stored
  if the memory has room, or if its class holds fewer than capacity / (classes
  seen) rows, replacing a random row of the largest class."""
  cap = mem.unit.shape[0]
  seen = jnp.sum((mem.count > 0) | (jnp.arange(mem.count.shape[0]) == unit))
  largest = jnp.argmax(mem.count)
  score = jax.random.uniform(key, (cap,)) + (mem.unit == largest)
  victim = jnp.argmax(score)
  has_room = mem.size < cap
  under = mem.count[unit] * seen < cap
  slot = jnp.where(has_room, mem.size, victim)
  store = has_room | under
  count = mem.count.at[unit].add(store.astype(jnp.int32))
  count = count.at[largest].add(-(store & ~has_room).astype(jnp.int32))

  def put(a, v):
    return a.at[slot].set(jnp.where(store, v, a[slot]))

  return GdumbState(
    jax.tree.map(put, mem.rows, row), put(mem.unit, unit), count, mem.size + (store & has_room).astype(jnp.int32)
  )


def retraining_learner(model: TaskModel, optimizer: optax.GradientTransformation, batch: int) -> engine.Learner:
  """GDumb's retraining as an engine learner: a model learning from the memory alone.

  `init(key)`: fresh parameters `model.init(key)` and the optimizer's state.
  `step(state, key, memory)`: one optimizer step on `batch` rows drawn with
  `key` from the memory (a `GdumbState`, the env); its metric is the batch's
  loss.
  """

  def init(key: jax.Array) -> LearnerState:
    params = model.init(key)
    return new_state(params, optimizer.init(params), key)

  def step(state: LearnerState, key: jax.Array, memory: GdumbState) -> tuple[LearnerState, jax.Array]:
    rows = buffer.draw(memory.rows, memory.size, batch, key)
    loss, grads = jax.value_and_grad(lambda p: model.loss(p, rows)[0])(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1), loss

  return engine.Learner(init, step)


def gdumb(
  model: TaskModel, optimizer: optax.GradientTransformation, capacity: int = 500, steps: int = 500, batch: int = 16
) -> Strategy:
  """GDumb with a memory of `capacity` rows, retrained for `steps` steps of `batch`."""
  if model.classes is None or model.n_classes < 1:
    raise ConfigError("gdumb needs a model with classes (TaskModel.classes and n_classes)")

  def init(params, key):
    del params, key
    rows = jax.tree.map(lambda a: jnp.zeros((capacity, *a.shape[1:]), a.dtype), model.empty_batch(1))
    return GdumbState(
      rows, jnp.full((capacity,), -1, jnp.int32), jnp.zeros((model.n_classes,), jnp.int32), jnp.zeros((), jnp.int32)
    )

  def loss(params, sstate, hp, batch_, key):
    del sstate, hp, batch_, key
    zero = jnp.zeros(()) * sum(jnp.sum(p) for p in jax.tree.leaves(params))
    return zero, {"ce": zero}

  def after_step(sstate, hp, old_params, new_params, grads, b, aux, key):
    del hp, old_params, grads, aux
    rows = model.stored(b)
    n = jax.tree.leaves(rows)[0].shape[0]
    keys = jax.random.split(key, n)
    units = model.classes(b)
    mem = jax.lax.fori_loop(0, n, lambda i, m: offer(m, jax.tree.map(lambda a: a[i], rows), units[i], keys[i]), sstate)
    return new_params, mem

  retrain = retraining_learner(model, optimizer, batch)

  def end_task(state, env, task, key):
    del env, task
    k_init, k_steps = jax.random.split(key)
    trained, _ = engine.scan(retrain, retrain.init(k_init), jax.random.split(k_steps, steps), env=state.strategy)
    return state.replace(params=trained.params)

  return Strategy("gdumb", {}, init, loss, after_step=after_step, end_task=end_task)
