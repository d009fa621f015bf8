"""A reservoir replay buffer held as fixed-size arrays (a pytree).

Reservoir sampling (Vitter's algorithm R): the n-th row seen overall is
stored if n < capacity, else it replaces slot j ~ U{0..n} when j < capacity,
so every row seen so far is in the buffer with equal probability.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Buffer(NamedTuple):
  """Stored rows; row i is valid when i < min(seen, capacity).

  Attributes:
    x: float32 [K, D].
    y: int32 [K].
    head: int32 [K].
    task: int32 [K].
    logits: float32 [K, C], the model's output when the row was stored (DER).
    seen: int32 [], rows offered so far.
  """

  x: jax.Array
  y: jax.Array
  head: jax.Array
  task: jax.Array
  logits: jax.Array
  seen: jax.Array

  @property
  def capacity(self) -> int:
    return self.x.shape[0]

  @property
  def size(self) -> jax.Array:
    return jnp.minimum(self.seen, self.capacity)


def empty(capacity: int, in_dim: int, n_logits: int) -> Buffer:
  return Buffer(jnp.zeros((capacity, in_dim), jnp.float32), jnp.zeros((capacity,), jnp.int32),
                jnp.zeros((capacity,), jnp.int32), jnp.zeros((capacity,), jnp.int32),
                jnp.zeros((capacity, n_logits), jnp.float32), jnp.zeros((), jnp.int32))


def reservoir_slots(seen: jax.Array, n: int, capacity: int, key: jax.Array) -> jax.Array:
  """Slot of each of n new rows (capacity = dropped), in order. int32 [n]."""
  pos = seen + jnp.arange(n)
  j = jnp.floor(jax.random.uniform(key, (n,)) * (pos + 1).astype(jnp.float32)).astype(jnp.int32)
  j = jnp.minimum(j, pos)
  return jnp.where(pos < capacity, pos, jnp.where(j < capacity, j, capacity))


def add(buf: Buffer, x: jax.Array, y: jax.Array, head: jax.Array, task: jax.Array,
        logits: jax.Array, key: jax.Array) -> Buffer:
  """Offers a batch of rows ([n, ...] each) to the reservoir, in order.

  Rows of one batch that draw the same slot are written in order (the later
  one wins), as if offered one by one.
  """
  n = x.shape[0]
  slots = reservoir_slots(buf.seen, n, buf.capacity, key)
  # The last writer of each slot wins: drop earlier rows whose slot reappears later.
  later = (slots[:, None] == slots[None, :]) & (jnp.arange(n)[None, :] > jnp.arange(n)[:, None])
  slots = jnp.where(jnp.any(later, axis=1), buf.capacity, slots)
  put = lambda a, v: a.at[slots].set(v, mode="drop")
  return Buffer(put(buf.x, x), put(buf.y, y), put(buf.head, head), put(buf.task, task),
                put(buf.logits, logits), buf.seen + n)


def sample(buf: Buffer, n: int, key: jax.Array) -> tuple[Buffer, jax.Array]:
  """n rows drawn uniformly with replacement from the valid rows.

  Returns:
    The rows as a Buffer of capacity n, and a float32 [n] mask that is 0
    when the buffer is still empty.
  """
  idx = jnp.floor(jax.random.uniform(key, (n,)) * jnp.maximum(buf.size, 1)).astype(jnp.int32)
  idx = jnp.minimum(idx, jnp.maximum(buf.size, 1) - 1)
  rows = Buffer(buf.x[idx], buf.y[idx], buf.head[idx], buf.task[idx], buf.logits[idx],
                jnp.asarray(n, jnp.int32))
  return rows, jnp.full((n,), buf.size > 0, jnp.float32)
