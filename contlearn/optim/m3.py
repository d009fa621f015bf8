"""M3: multi-scale momentum with orthogonalised fast and slow memories.

Every step, for each parameter leaf, with gradient `g`:

    M1 <- M1 + b1 g          (fast momentum, accumulated, no EMA)
    V  <- V  + b2 g^2        (second moments, accumulated)
    O1 =  NS(M1)

Every `period` steps (`t = period, 2 period, ...`), with `G` the sum of the
gradients since the last refresh:

    M2 <- M2 + b3 G          (slow momentum)
    O2 =  NS(M2)             (kept and reused until the next refresh)

    update = -lr (O1 + alpha O2) / (sqrt(V) + eps)

NS is Newton-Schulz orthogonalisation (`newton_schulz.orthogonalize`); on
leaves that are not matrices it is the identity.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from contlearn.errors import ConfigError
from contlearn.optim.newton_schulz import orthogonalize


class M3State(NamedTuple):
  """Attributes (each a params-shaped tree unless noted):
  count: [] int32 steps since the slow memory was refreshed;
  m1, v, m2: fast momentum, second moments, slow momentum;
  pending: gradients summed since the last refresh;
  o2: the slow memory's orthogonalised output, reused between refreshes."""

  count: jax.Array
  m1: Any
  v: Any
  m2: Any
  pending: Any
  o2: Any


def m3(
  lr: float = 1e-3,
  b1: float = 0.9,
  b2: float = 0.999,
  b3: float = 0.9,
  alpha: float = 1.0,
  period: int = 8,
  ns_steps: int = 5,
  eps: float = 1e-4,
) -> optax.GradientTransformation:
  """The M3 optimizer (module docstring).

  `eps` defaults to 1e-4, not the usual 1e-8: the orthogonalised momenta
  spread mass over every coordinate, and a coordinate whose gradients are
  all zero (the embedding row of a token not yet seen) would otherwise step
  by `lr / 1e-8`. On the byte LM (tests/test_optim.py's setting) eps=1e-8
  diverges; 1e-4 to 1e-2 learn.
  """
  if period < 1:
    raise ConfigError(f"m3 period={period} must be >= 1")
  ns = lambda x: orthogonalize(x, ns_steps)

  def init(params):
    zeros = lambda: optax.tree.zeros_like(params)
    return M3State(jnp.zeros((), jnp.int32), zeros(), zeros(), zeros(), zeros(), zeros())

  def update(grads, state, params=None):
    del params
    m1 = jax.tree.map(lambda m, g: m + b1 * g, state.m1, grads)
    v = jax.tree.map(lambda v, g: v + b2 * g * g, state.v, grads)
    pending = jax.tree.map(jnp.add, state.pending, grads)
    count = state.count + 1
    refresh = count >= period

    def slow(_):
      m2 = jax.tree.map(lambda m, p: m + b3 * p, state.m2, pending)
      return m2, jax.tree.map(ns, m2), optax.tree.zeros_like(pending), jnp.zeros((), jnp.int32)

    def keep(_):
      return state.m2, state.o2, pending, count

    m2, o2, pending, count = jax.lax.cond(refresh, slow, keep, None)
    updates = jax.tree.map(lambda m, o, v: -lr * (ns(m) + alpha * o) / (jnp.sqrt(v) + eps), m1, o2, v)
    return updates, M3State(count, m1, v, m2, pending, o2)

  return optax.GradientTransformation(init, update)
