"""Stablemax cross-entropy: softmax's exponential replaced by a function that grows linearly.

    s(x) = x + 1        for x >= 0
    s(x) = 1 / (1 - x)  for x < 0
    log p_i = log s(x_i) - log sum_j s(x_j)

HRM and TRM train their answer head with it (in float64 there; float32 here,
as JAX runs without x64 by default). Unlike softmax, a confident logit grows
its probability only slowly, which the HRM authors found keeps long training
runs on small data stable.

>>> import jax.numpy as jnp
>>> float(stablemax_cross_entropy(jnp.array([[1.0, 0.0]]), jnp.array([0]))[0])  # -log(2 / 3)
0.405465...
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def stablemax(x: jax.Array) -> jax.Array:
  """`s(x)` elementwise (module docstring): positive, increasing, `s(0) = 1`."""
  safe = jnp.minimum(x, 0.0)  # keeps the unused branch of `where` finite, so its gradient is too
  return jnp.where(x >= 0, x + 1.0, 1.0 / (1.0 - safe))


def log_stablemax(logits: jax.Array) -> jax.Array:
  """float32 `[..., V]`: the log-probabilities `log s(x_i) / sum_j s(x_j)` over the last axis."""
  s = stablemax(logits.astype(jnp.float32))
  return jnp.log(s) - jnp.log(jnp.sum(s, axis=-1, keepdims=True))


def stablemax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """float32 `[...]`: `-log p[label]` for logits `[..., V]` and int labels `[...]`."""
  return -jnp.take_along_axis(log_stablemax(logits), labels[..., None], axis=-1)[..., 0]
