"""A fixed-size first-in-first-out ring buffer of pytree items, as pure functions.

Item n (counting from 0) is written to slot `n % capacity`, so once the
buffer is full each new item overwrites the oldest one; `count` is the number
of items ever pushed and `size = min(count, capacity)` the number held.

>>> import jax, jax.numpy as jnp
>>> ring = empty(2, jnp.zeros(()))
>>> for v in (1.0, 2.0, 3.0):
...   ring = push(ring, jnp.asarray(v))
>>> ring.items.tolist(), int(ring.count), int(ring.size)
([3.0, 2.0], 3, 2)

Unlike `contlearn.strategies.buffer` (a reservoir: every item seen so far is
kept with equal probability), a ring keeps the most recent items, as the
replay buffer of an Energy-Based Transformer's predictions does
(`contlearn.models.ebt`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any


class Ring(NamedTuple):
  """A ring buffer.

  Attributes:
    items: a pytree whose every leaf is `[C, ...]` (C = capacity).
    count: int32 [], items pushed so far.
  """

  items: PyTree
  count: jax.Array

  @property
  def capacity(self) -> int:
    return jax.tree.leaves(self.items)[0].shape[0]

  @property
  def size(self) -> jax.Array:
    """int32 [], items held: min(count, capacity)."""
    return jnp.minimum(self.count, self.capacity)


def empty(capacity: int, example: PyTree) -> Ring:
  """An empty ring of `capacity` items shaped and typed like `example` (one item)."""
  items = jax.tree.map(lambda a: jnp.zeros((capacity, *jnp.shape(a)), jnp.asarray(a).dtype), example)
  return Ring(items, jnp.zeros((), jnp.int32))


def push(ring: Ring, item: PyTree) -> Ring:
  """`ring` with `item` written over slot `count % capacity` (the oldest once full)."""
  slot = ring.count % ring.capacity
  items = jax.tree.map(lambda a, v: a.at[slot].set(v.astype(a.dtype)), ring.items, item)
  return Ring(items, ring.count + 1)


def sample(ring: Ring, key: jax.Array) -> PyTree:
  """One item drawn uniformly from the `size` held (slot 0, zeros, while empty)."""
  slot = jax.random.randint(key, (), 0, jnp.maximum(ring.size, 1))
  return jax.tree.map(lambda a: a[slot], ring.items)
