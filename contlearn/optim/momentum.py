"""Momentum read as an associative memory of gradients (Nested Learning).

Each rule keeps a memory `m` (one per parameter leaf, its shape) and returns
`m'` as the update, so `W' = W + m'`:

    momentum                 m' = alpha m - lr g
    preconditioned momentum  m' = alpha m - lr P g,   P = 1 / (sqrt(v) + eps),
                             v' = b2 v + (1 - b2) g^2   (preconditioner="rms")
                             or P = I                   (preconditioner="identity")
    delta-rule momentum      m' = alpha m - beta k (k . m) - lr P g,  k = g / ||g||

Momentum solves, one gradient step at a time, the inner problem of storing
the gradients it has seen; the delta rule first erases what the memory holds
along the current gradient (`k (k . m)`, with `beta = 1` exactly) before
writing it, so a memory that points against today's gradient forgets faster.
The gradient direction `k` is normalised per leaf (leaves are flattened);
`beta` is the erase strength. Choices not fixed by the paper: the
preconditioner (an RMS estimate) and the normalisation of `k`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from contlearn.errors import ConfigError


class MomentumState(NamedTuple):
  """Attributes: `m` the memory (params' tree); `v` second moments (or empty)."""

  m: Any
  v: Any


def _memory_rule(alpha, lr, preconditioner, b2, eps, beta) -> optax.GradientTransformation:
  if preconditioner not in ("identity", "rms"):
    raise ConfigError(f"preconditioner={preconditioner!r}: choose 'identity' or 'rms'")

  def init(params):
    zeros = optax.tree.zeros_like(params)
    return MomentumState(m=zeros, v=zeros if preconditioner == "rms" else ())

  def update(grads, state, params=None):
    del params
    if preconditioner == "rms":
      v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.v, grads)
      pg = jax.tree.map(lambda g, v: g / (jnp.sqrt(v) + eps), grads, v)
    else:
      v, pg = state.v, grads

    def write(m, g, p):
      new = alpha * m - lr * p
      if beta:
        k = g / (jnp.sqrt(jnp.sum(g * g)) + eps)
        new = new - beta * k * jnp.sum(k * m)
      return new

    m = jax.tree.map(write, state.m, grads, pg)
    return m, MomentumState(m=m, v=v)

  return optax.GradientTransformation(init, update)


def momentum(alpha: float = 0.9, lr: float = 1e-2) -> optax.GradientTransformation:
  """`m' = alpha m - lr g`; the update is `m'`."""
  return _memory_rule(alpha, lr, "identity", 0.0, 0.0, 0.0)


def preconditioned_momentum(
  alpha: float = 0.9, lr: float = 1e-3, preconditioner: str = "rms", b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
  """`m' = alpha m - lr P g` with `P` the RMS preconditioner (or the identity)."""
  return _memory_rule(alpha, lr, preconditioner, b2, eps, 0.0)


def delta_momentum(
  alpha: float = 0.9,
  lr: float = 1e-2,
  beta: float = 1.0,
  preconditioner: str = "identity",
  b2: float = 0.999,
  eps: float = 1e-8,
) -> optax.GradientTransformation:
  """Delta-rule momentum: `m' = alpha m - beta k (k . m) - lr P g`, `k = g / ||g||`."""
  if beta < 0:
    raise ConfigError(f"delta_momentum beta={beta} must be >= 0")
  return _memory_rule(alpha, lr, preconditioner, b2, eps, beta)
