"""Delta gradient descent (DGD): gradient descent that erases before it writes.

For a linear map `y = W x` with output gradient `u = dL/dy`, plain gradient
descent adds `-lr u x^T`. DGD first removes what `W` returns for the current
input, the delta rule applied to the weights themselves:

    W' = W (I - beta x x^T) - lr u x^T          (one token, ||x|| = 1, beta = 1)

Over a batch of inputs `X [n, d_in]` the gradient `G = sum_i u_i x_i^T` is
what the outer code already has, and the erase term uses the inputs'
second moment:

    W' = W - beta W (X^T X) / n - lr G

`delta_gradient_descent` is that rule as an optax transformation whose
`update` takes the inputs of each linear leaf as an extra argument (`None`
for leaves without inputs, which take a plain gradient step). `dgd_token`
is the one-token form, the reference for the batched form at `n = 1`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def dgd_token(w: jax.Array, x: jax.Array, u: jax.Array, lr: float, beta: float = 1.0) -> jax.Array:
  """`W [d_out, d_in]`, `x [d_in]`, `u [d_out]` -> `W (I - beta x x^T) - lr u x^T`."""
  return w - beta * jnp.outer(w @ x, x) - lr * jnp.outer(u, x)


def delta_gradient_descent(lr: float, beta: float = 1.0) -> optax.GradientTransformationExtraArgs:
  """DGD for linear leaves `W [d_out, d_in]` (module docstring).

  `update(grads, state, params, inputs=tree)` where `inputs` matches the
  params' structure with `X [n, d_in]` at each linear leaf and `None`
  elsewhere (`None` for the whole tree: plain SGD).
  """

  def init(params):
    del params
    return optax.EmptyState()

  def update(grads, state, params=None, *, inputs: Any = None, **extra):
    del extra
    if inputs is None:
      return jax.tree.map(lambda g: -lr * g, grads), state
    if params is None:
      raise ValueError("delta_gradient_descent needs params to erase from")

    def step(g, w, x):
      if x is None:
        return -lr * g
      second_moment = x.T @ x / x.shape[0]
      return -beta * (w @ second_moment) - lr * g

    return jax.tree.map(step, grads, params, inputs, is_leaf=lambda v: v is None), state

  return optax.GradientTransformationExtraArgs(init, update)
