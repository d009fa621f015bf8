"""GDumb (Prabhu et al.): a greedy class-balanced memory, and a model
retrained from scratch on the memory alone at the end of each task.

The stream itself is not learned from (the step's loss is zero); a class is
an output unit, `head * head_size + label`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from contlearn.cl.model import Mlp, cross_entropy
from contlearn.cl.strategies.base import Strategy

class GdumbState(NamedTuple):
  """Memory rows (valid below `size`) and the count of each class in it."""

  x: jax.Array  # float32 [K, D]
  y: jax.Array  # int32 [K]
  head: jax.Array  # int32 [K]
  unit: jax.Array  # int32 [K], class of each row
  count: jax.Array  # int32 [n_units]
  size: jax.Array  # int32 []


def offer(mem: GdumbState, x: jax.Array, y: jax.Array, head: jax.Array, unit: jax.Array,
          key: jax.Array) -> GdumbState:
  """Offers one row: stored if the memory has room, or if its class holds fewer
  than capacity / (classes seen) rows, replacing a random row of the largest class."""
  cap = mem.x.shape[0]
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
  return GdumbState(put(mem.x, x), put(mem.y, y), put(mem.head, head), put(mem.unit, unit),
                    count, mem.size + (store & has_room).astype(jnp.int32))


def gdumb(model: Mlp, optimizer: optax.GradientTransformation, capacity: int = 500,
          steps: int = 500, batch: int = 16) -> Strategy:
  """GDumb with a memory of `capacity` rows, retrained for `steps` steps of `batch`."""
  def init(params, key):
    del params, key
    return GdumbState(jnp.zeros((capacity, model.in_dim), jnp.float32),
                      jnp.zeros((capacity,), jnp.int32), jnp.zeros((capacity,), jnp.int32),
                      jnp.full((capacity,), -1, jnp.int32),
                      jnp.zeros((model.out_dim,), jnp.int32), jnp.zeros((), jnp.int32))

  def loss(params, sstate, hp, batch_, key):
    del sstate, hp, batch_, key
    zero = jnp.zeros(()) * sum(jnp.sum(p) for p in jax.tree.leaves(params))
    return zero, {"ce": zero}

  def after_step(sstate, hp, old_params, new_params, grads, b, aux, key):
    del hp, old_params, grads, aux
    keys = jax.random.split(key, b.x.shape[0])
    units = b.head * model.head_size + b.y
    mem = jax.lax.fori_loop(
        0, b.x.shape[0],
        lambda i, m: offer(m, b.x[i], b.y[i], b.head[i], units[i], keys[i]), sstate)
    return new_params, mem

  def end_task(state, scenario, task, key):
    del scenario, task
    k_init, k_steps = jax.random.split(key)
    mem = state.sstate
    params = model.init(k_init)

    def step(carry, k):
      params, opt_state = carry
      idx = jnp.floor(jax.random.uniform(k, (batch,)) * jnp.maximum(mem.size, 1)).astype(jnp.int32)
      idx = jnp.minimum(idx, jnp.maximum(mem.size, 1) - 1)
      g = jax.grad(lambda p: cross_entropy(model.logits(p, mem.x[idx], mem.head[idx]),
                                           mem.y[idx]))(params)
      updates, opt_state = optimizer.update(g, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)),
                                  jax.random.split(k_steps, steps))
    return state.replace(params=params)
  return Strategy("gdumb", {}, init, loss, after_step=after_step, end_task=end_task)
