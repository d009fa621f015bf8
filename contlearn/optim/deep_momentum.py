"""Deep momentum gradient descent (DMGD): the momentum is a small MLP.

The memory of gradients is not a vector but a function `m_phi`, applied to
every coordinate of the gradient (shared across coordinates, like a learned
optimizer's per-coordinate network), with `h` hidden units:

    m_phi(u) = u * a + w2 . tanh(w1 u + b1)          phi = (a, w1 [h], b1 [h], w2 [h])

At every step the memory learns to map the gradient to itself (its inner,
"local" loss; Nested Learning eq. 23 with a squared-error attentional bias),
with momentum on its own parameters, and the update reads the memory:

    L2(phi; u) = mean_j (m_phi(u_j) - u_j)^2 / 2
    mu'  = alpha mu - inner_lr grad_phi L2(phi; u)
    phi' = phi + mu'
    W'   = W - lr m_phi'(u)

With `h = 0` and `a` fixed this is SGD with a scalar step; the MLP lets the
optimizer learn a nonlinear, history-dependent transform of gradients. The
memory starts at the identity (`a = 1`, `w2 = 0`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class DeepMomentumState(NamedTuple):
  """Attributes: phi (dict a [], w1 [h], b1 [h], w2 [h]), its momentum mu (same), key-free."""

  phi: Any
  mu: Any


def memory_apply(phi: dict, u: jax.Array) -> jax.Array:
  """`m_phi(u)` coordinate-wise; `u` any shape."""
  per_unit = lambda w: jnp.reshape(w, (1,) * u.ndim + (-1,))  # [1, ..., 1, h]
  hidden = jnp.tanh(u[..., None] * per_unit(phi["w1"]) + per_unit(phi["b1"]))
  return u * phi["a"] + jnp.sum(hidden * per_unit(phi["w2"]), axis=-1)


def memory_loss(phi: dict, u: jax.Array) -> jax.Array:
  return 0.5 * jnp.mean(jnp.square(memory_apply(phi, u) - u))


def deep_momentum(
  lr: float = 1e-2, alpha: float = 0.9, inner_lr: float = 1e-1, hidden: int = 8, seed: int = 0
) -> optax.GradientTransformation:
  """DMGD (module docstring): one memory MLP per parameter leaf."""

  def init_phi(key):
    return {
      "a": jnp.ones((), jnp.float32),
      "w1": jax.random.normal(key, (hidden,), jnp.float32),
      "b1": jnp.zeros((hidden,), jnp.float32),
      "w2": jnp.zeros((hidden,), jnp.float32),
    }

  def init(params):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), max(1, len(leaves)))
    phis = jax.tree.unflatten(treedef, [init_phi(k) for k in keys[: len(leaves)]])
    return DeepMomentumState(phi=phis, mu=jax.tree.map(jnp.zeros_like, phis))

  def update(grads, state, params=None):
    del params
    treedef = jax.tree.structure(grads)
    g_leaves = treedef.flatten_up_to(grads)
    phi_leaves = treedef.flatten_up_to(state.phi)
    mu_leaves = treedef.flatten_up_to(state.mu)
    new_phi, new_mu, updates = [], [], []
    for g, phi, mu in zip(g_leaves, phi_leaves, mu_leaves):
      inner_grad = jax.grad(memory_loss)(phi, g)
      mu = jax.tree.map(lambda m, d: alpha * m - inner_lr * d, mu, inner_grad)
      phi = jax.tree.map(jnp.add, phi, mu)
      new_phi.append(phi)
      new_mu.append(mu)
      updates.append(-lr * memory_apply(phi, g))
    unflat = lambda xs: jax.tree.unflatten(treedef, xs)
    return unflat(updates), DeepMomentumState(phi=unflat(new_phi), mu=unflat(new_mu))

  return optax.GradientTransformation(init, update)
