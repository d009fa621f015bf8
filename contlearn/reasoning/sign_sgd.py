"""Sign-SGD with decoupled weight decay, on the rows a step touched: the puzzle-embedding rule of HRM and TRM.

For a table `p [N, ...]` and its gradient `g`, a row `i` whose gradient is
not all zero (a puzzle of the batch) moves by

    p_i <- p_i (1 - lr weight_decay) - lr sign(g_i)

and every other row stays as it is, as the official sparse embedding
optimizer updates only the rows of the batch's puzzles. A leaf of rank 0 or
1 counts as one row.

>>> import jax.numpy as jnp, numpy as np
>>> rule = sign_sgd(0.1, weight_decay=0.5)
>>> table = jnp.ones((2, 2))
>>> updates, _ = rule.update(jnp.array([[3.0, -0.5], [0.0, 0.0]]), rule.init(table), table)
>>> np.asarray(updates, np.float64).round(4).tolist()   # row 0: -0.1 (0.5 + sign(g)); row 1 untouched
[[-0.15, 0.05], [0.0, 0.0]]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def sign_sgd(lr: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
  """The rule above; stateless (its state is `optax.EmptyState`), needs `params` when `weight_decay > 0`."""

  def update(grads, state, params=None):
    if weight_decay and params is None:
      raise ValueError("sign_sgd with weight decay needs params")

    def row_update(g, p):
      touched = jnp.any(g != 0, axis=tuple(range(1, g.ndim)), keepdims=True) if g.ndim > 1 else jnp.any(g != 0)
      decay = weight_decay * p if weight_decay else 0.0
      return jnp.where(touched, -lr * (jnp.sign(g) + decay), 0.0)

    return jax.tree.map(row_update, grads, grads if params is None else params), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
