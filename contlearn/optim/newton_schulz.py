"""Newton-Schulz orthogonalisation, and a nonlinear output on any rule.

`orthogonalize(X)` maps a matrix `X = U S V^T` to roughly `U V^T` with a
quintic Newton-Schulz iteration (coefficients a, b, c chosen for a steep
slope at zero, as in Muon):

    X <- X / ||X||_F
    repeat: A = X X^T;  X <- a X + (b A + c A A) X        (on the wide side)

`nonlinear_output(rule, fn)` is Nested Learning's `W' = W + sigma(m'(u))`:
the updates of `rule` (a momentum, say) are passed through `fn` leaf by leaf.
With linear momentum and `fn = orthogonalize` this is Muon (`muon`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

MUON_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(x: jax.Array, steps: int = 5, coeffs=MUON_COEFFS, eps: float = 1e-8) -> jax.Array:
  """Approximately `U V^T` of a matrix `x [m, n]`; other ranks pass through."""
  if x.ndim != 2:
    return x
  transposed = x.shape[0] > x.shape[1]
  if transposed:
    x = x.T
  a, b, c = coeffs
  x = x / (jnp.linalg.norm(x) + eps)

  def body(_, x):
    gram = x @ x.T
    return a * x + (b * gram + c * gram @ gram) @ x

  x = jax.lax.fori_loop(0, steps, body, x)
  return x.T if transposed else x


def nonlinear_output(rule: optax.GradientTransformation, fn: Callable[[jax.Array], jax.Array]):
  """`rule` followed by `fn` applied to each leaf of its updates."""

  def update(grads, state, params=None):
    updates, state = rule.update(grads, state, params)
    return jax.tree.map(fn, updates), state

  return optax.GradientTransformation(rule.init, update)


def muon(lr: float, beta: float = 0.95, steps: int = 5) -> optax.GradientTransformation:
  """Linear momentum (a memory of gradients) with an orthogonalised output.

  `m' = beta m + g`;  `W' = W - lr * orthogonalize(m')`. Matrices only; other
  leaves take the plain momentum step.
  """
  from contlearn.optim.momentum import momentum

  return optax.chain(
    nonlinear_output(momentum(alpha=beta, lr=-1.0), lambda m: orthogonalize(m, steps)),
    optax.scale(-lr),
  )
