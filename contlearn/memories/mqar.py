"""Multi-query associative recall (MQAR): does a memory remember?

A sequence holds `n` key-value pairs, then every key again, in a random
order, each followed by its value:

    k_1 v_1 k_2 v_2 ... k_n v_n | k_p(1) v_p(1) ... k_p(n) v_p(n) | 0 ... 0

Keys are drawn without repetition from [1, 1 + n_keys), values from
[1 + n_keys, 1 + n_keys + n_values); 0 pads to the fixed length `4 * max_pairs`.
A model reads `tokens[:, :-1]` and is scored on predicting `tokens[:, 1:]`
where the input token is a repeated key (the `answer` mask): the value must
come from memory, since it appears only once before.

Training mixes pair counts (`pair_counts`): uniform on 1..max_pairs, or
log-uniform, which gives each octave of counts the same share, so small
counts are common, as in Zoology's mixtures (most examples with few pairs).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Batch(NamedTuple):
  tokens: jax.Array  # [B, 4 * max_pairs] int32
  answer: jax.Array  # [B, 4 * max_pairs - 1] bool: positions scored


def vocab_size(n_keys: int, n_values: int) -> int:
  return 1 + n_keys + n_values


MIXES = ("uniform", "log_uniform")


def pair_counts(key: jax.Array, batch: int, max_pairs: int, mix: str) -> jax.Array:
  """[B] pair counts in 1..max_pairs: "uniform", or "log_uniform" (P(n) = log(1 + 1/n) / log(1 + max_pairs))."""
  if mix == "uniform":
    return jax.random.randint(key, (batch,), 1, max_pairs + 1)
  if mix == "log_uniform":
    u = jax.random.uniform(key, (batch,), maxval=jnp.log(max_pairs + 1.0))
    return jnp.clip(jnp.floor(jnp.exp(u)).astype(jnp.int32), 1, max_pairs)
  raise ValueError(f"mix={mix!r}: choose one of {', '.join(MIXES)}")


def sample(key: jax.Array, batch: int, pairs: jax.Array | int, max_pairs: int, n_keys: int, n_values: int) -> Batch:
  """A batch of MQAR sequences with `pairs` ([B] or a scalar) pairs each."""
  if n_keys < max_pairs:
    raise ValueError(f"n_keys={n_keys} must be >= max_pairs={max_pairs} (keys are distinct)")
  k_keys, k_vals, k_perm = jax.random.split(key, 3)
  pairs = jnp.broadcast_to(jnp.asarray(pairs, jnp.int32), (batch,))
  keys = 1 + jax.vmap(lambda kk: jax.random.permutation(kk, n_keys)[:max_pairs])(jax.random.split(k_keys, batch))
  values = 1 + n_keys + jax.random.randint(k_vals, (batch, max_pairs), 0, n_values)
  slot = jnp.arange(max_pairs)[None, :]
  real = slot < pairs[:, None]  # [B, P]
  # A random order of the real pairs: sort random scores, padding last.
  scores = jnp.where(real, jax.random.uniform(k_perm, (batch, max_pairs)), 2.0)
  order = jnp.argsort(scores, axis=1)
  q_keys = jnp.take_along_axis(keys, order, axis=1)
  q_vals = jnp.take_along_axis(values, order, axis=1)
  writes = jnp.stack([keys, values], axis=2).reshape(batch, 2 * max_pairs)
  reads = jnp.stack([q_keys, q_vals], axis=2).reshape(batch, 2 * max_pairs)
  real2 = jnp.repeat(real, 2, axis=1)
  # Compact: the n pairs, then the n queries, then padding.
  pos = jnp.arange(2 * max_pairs)[None, :]
  seq = jnp.zeros((batch, 4 * max_pairs), jnp.int32)
  rows = jnp.arange(batch)[:, None]
  seq = seq.at[rows, jnp.where(real2, pos, 4 * max_pairs)].set(writes, mode="drop")
  seq = seq.at[rows, jnp.where(real2, pos + 2 * pairs[:, None], 4 * max_pairs)].set(reads, mode="drop")
  is_query = (pos % 2 == 0) & real2
  answer = jnp.zeros((batch, 4 * max_pairs), bool)
  answer = answer.at[rows, jnp.where(is_query, pos + 2 * pairs[:, None], 4 * max_pairs)].set(True, mode="drop")
  return Batch(seq, answer[:, :-1])
