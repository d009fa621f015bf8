"""Fingerprints of a pytree's leaves, computed on the device, to verify a checkpoint.

Each leaf's bits are read as 32-bit words `w[i]` (narrower types widened,
wider ones split; typed PRNG keys through their key data) and reduced to two
words, both sums mod 2^32:

    a = sum_i w[i] * (2 i + 1)            b = sum_i mix(w[i] + i)

`mix` is MurmurHash3's 32-bit finaliser. A change of any one word changes
`a` (its weight is odd, so no non-zero change vanishes mod 2^32); `b` makes
several changes that cancel in `a` unlikely to cancel too. The reduction
runs under `jit` where the state lives (sharded leaves stay sharded); only
`2 x leaves` words come back to the host.

>>> import jax.numpy as jnp
>>> tree = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.int32(7)}
>>> a = fingerprint(tree)
>>> a == fingerprint(tree), a == fingerprint({"w": tree["w"].at[1, 2].set(5.5), "step": tree["step"]})
(True, False)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import engine


def _words(x: jax.Array) -> jax.Array:
  """The leaf's bits as a flat uint32 array."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.reshape(-1).astype(jnp.uint32)
  size = x.dtype.itemsize
  if size == 4:
    return jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
  if size < 4:
    narrow = {1: jnp.uint8, 2: jnp.uint16}[size]
    return jax.lax.bitcast_convert_type(x, narrow).reshape(-1).astype(jnp.uint32)
  return jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)  # [..., size // 4] words


def _mix(h: jax.Array) -> jax.Array:
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _leaf(x: jax.Array) -> jax.Array:
  w = _words(x)
  i = jnp.arange(w.shape[0], dtype=jnp.uint32)
  return jnp.stack([jnp.sum(w * (2 * i + 1), dtype=jnp.uint32), jnp.sum(_mix(w + i), dtype=jnp.uint32)])


def _leaves(tree: Any) -> list[jax.Array]:
  return [_leaf(x) for x in jax.tree.leaves(tree)]


_all = engine.compile_call(_leaves, donate=False)  # a boundary reduction over the state, compiled by the engine


def fingerprint(tree: Any) -> list[list[int]]:
  """`[a, b]` per leaf, in `jax.tree.leaves` order (JSON-ready ints)."""
  pairs = jax.device_get(_all(tree))
  return [[int(v) for v in np.asarray(pair)] for pair in pairs]


def first_mismatch(tree: Any, expected: list[list[int]]) -> str | None:
  """The path of the first leaf whose fingerprint differs from `expected`, else None."""
  got = fingerprint(tree)
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
  if len(got) != len(expected):
    return f"(the tree has {len(got)} leaves, the checkpoint recorded {len(expected)})"
  for path, a, b in zip(paths, got, expected, strict=True):
    if a != list(b):
      return path or "(root)"
  return None
