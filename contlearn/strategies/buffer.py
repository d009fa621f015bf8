"""A reservoir replay buffer of rows of any batch pytree, held as fixed-size arrays.

Reservoir sampling (Vitter's algorithm R): the n-th row seen overall is
stored if n < capacity, else it replaces slot j ~ U{0..n} when j < capacity,
so every row seen so far is in the buffer with equal probability.

A row is a slice `[i]` of every leaf of a batch pytree: a classifier's
`Batch(x [B, D], y [B], head [B], task [B])`, a byte LM's
`Sequences(tokens [B, T+1], mask [B, T])`, or a user's own batch type. The
task a row came from is part of the row when the batch type has one (the
classifier's `Batch.task`); a stream's batch does not know its task.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any


class Buffer(NamedTuple):
  """Stored rows; row i is valid when i < min(seen, capacity).

  Attributes:
    rows: a batch pytree whose every leaf is `[K, ...]` (K = capacity).
    outputs: float32 [K, *out], the model's outputs when the row was stored
      (DER's targets), or () when the strategy keeps none.
    seen: int32 [], rows offered so far.
  """

  rows: PyTree
  outputs: Any
  seen: jax.Array

  @property
  def capacity(self) -> int:
    return jax.tree.leaves(self.rows)[0].shape[0]

  @property
  def size(self) -> jax.Array:
    return jnp.minimum(self.seen, self.capacity)


def empty(capacity: int, example: PyTree, out_shape: tuple[int, ...] | None = None) -> Buffer:
  """An empty buffer for rows shaped like those of `example` (a batch of any size).

  `out_shape`: the shape of one row's outputs to keep (DER), or None to keep none.
  """
  rows = jax.tree.map(lambda a: jnp.zeros((capacity, *jnp.shape(a)[1:]), jnp.asarray(a).dtype), example)
  outputs = () if out_shape is None else jnp.zeros((capacity, *out_shape), jnp.float32)
  return Buffer(rows, outputs, jnp.zeros((), jnp.int32))


def reservoir_slots(seen: jax.Array, n: int, capacity: int, key: jax.Array) -> jax.Array:
  """Slot of each of n new rows (capacity = dropped), in order. int32 [n]."""
  pos = seen + jnp.arange(n)
  j = jnp.floor(jax.random.uniform(key, (n,)) * (pos + 1).astype(jnp.float32)).astype(jnp.int32)
  j = jnp.minimum(j, pos)
  return jnp.where(pos < capacity, pos, jnp.where(j < capacity, j, capacity))


def add(buf: Buffer, rows: PyTree, outputs: Any, key: jax.Array) -> Buffer:
  """Offers a batch of n rows (`rows`, and `outputs [n, ...]` or ()) in order.

  Rows of one batch that draw the same slot are written in order (the later
  one wins), as if offered one by one.
  """
  n = jax.tree.leaves(rows)[0].shape[0]
  slots = reservoir_slots(buf.seen, n, buf.capacity, key)
  # The last writer of each slot wins: drop earlier rows whose slot reappears later.
  later = (slots[:, None] == slots[None, :]) & (jnp.arange(n)[None, :] > jnp.arange(n)[:, None])
  slots = jnp.where(jnp.any(later, axis=1), buf.capacity, slots)
  put = lambda a, v: a.at[slots].set(v, mode="drop")  # noqa: E731
  stored, kept = jax.tree.map(put, (buf.rows, buf.outputs), (rows, outputs))
  return Buffer(stored, kept, buf.seen + n)


def rebalanced(buf: Buffer, task: jax.Array, new_rows: PyTree) -> Buffer:
  """The memory after task `task` ends, shared evenly by the tasks so far (no outputs kept).

  With K = capacity and s = K // (task + 1), task j < `task` keeps the first s
  of its rows and task `task` gets the first s of `new_rows` (every leaf
  `[K, ...]`): task j's rows sit in slots `[j s, (j + 1) s)`, so they were the
  first of its slots before too, and the last K mod (task + 1) slots stay
  empty. The memory then holds finished tasks only, each an equal share.

  Args:
    buf: the memory, laid out so by the earlier calls (empty before task 0's end).
    task: int32 [], the task that ended (0-based, below K: each task needs
      a slot).
    new_rows: K rows of that task, in the order they should be kept.
  """
  k = buf.capacity
  share = k // (task + 1)
  before = k // jnp.maximum(task, 1)  # each earlier task's share until now
  slot = jnp.arange(k)
  owner, rank = slot // share, slot % share
  new = owner == task
  source = jnp.where(new, rank, jnp.minimum(owner * before + rank, k - 1))

  def pick(old, fresh):
    return jnp.where(new.reshape(-1, *[1] * (old.ndim - 1)), fresh[source], old[source])

  return Buffer(jax.tree.map(pick, buf.rows, new_rows), buf.outputs, share * (task + 1))


def draw(stored: PyTree, size: jax.Array, n: int, key: jax.Array) -> PyTree:
  """n rows drawn uniformly with replacement from the first `size` rows of
  `stored` (every leaf `[K, ...]`; row 0 when `size` is 0)."""
  idx = jnp.floor(jax.random.uniform(key, (n,)) * jnp.maximum(size, 1)).astype(jnp.int32)
  idx = jnp.minimum(idx, jnp.maximum(size, 1) - 1)
  return jax.tree.map(lambda a: a[idx], stored)


def sample(buf: Buffer, n: int, key: jax.Array) -> tuple[Buffer, jax.Array]:
  """n rows drawn uniformly with replacement from the valid rows.

  Returns:
    The rows as a Buffer of capacity n, and a float32 [n] mask that is 0
    when the buffer is still empty.
  """
  rows, outputs = draw((buf.rows, buf.outputs), buf.size, n, key)
  return Buffer(rows, outputs, jnp.asarray(n, jnp.int32)), jnp.full((n,), buf.size > 0, jnp.float32)
