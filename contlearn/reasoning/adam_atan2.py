"""AdamATan2: Adam with `atan2(m, b sqrt(v))` in place of `m / (sqrt(v) + eps)`, as an optax rule.

With gradients g_t, t = 1, 2, ...:

    m_t = beta1 m_{t-1} + (1 - beta1) g_t        m^_t = m_t / (1 - beta1^t)
    v_t = beta2 v_{t-1} + (1 - beta2) g_t^2      v^_t = v_t / (1 - beta2^t)
    update_t = -lr (a atan2(m^_t, b sqrt(v^_t)) + weight_decay p_{t-1})

(Everett et al. 2024, "Scaling Exponents Across Parameterizations and
Optimizers"). The update is bounded by `lr (a pi / 2 + wd |p|)` and needs no
epsilon; a zero gradient gives a zero step (`atan2(0, 0) = 0`). The weight
decay is decoupled, as in AdamW, and uses the parameters before the step.
HRM and TRM train their networks with it (betas 0.9, 0.95; weight decay 1.0
on Sudoku and mazes, 0.1 on ARC). Their `adam_atan2` package is a fused CUDA
kernel; a = b = 1 is the plain formula above, and `a=1.27` (about 4 / pi) is
the value of the widely used pure-PyTorch port, which makes a large
consistent step close to Adam's `lr`.

>>> import jax.numpy as jnp, numpy as np
>>> rule = adam_atan2(0.1)
>>> params = {"w": jnp.ones(2)}
>>> updates, _ = rule.update({"w": jnp.array([2.0, -3.0])}, rule.init(params), params)
>>> np.asarray(updates["w"], np.float64).round(4).tolist()   # first step: -lr a atan2(g, |g|) = -lr pi/4 sign(g)
[-0.0785, 0.0785]
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class AdamATan2State(NamedTuple):
  """`count` [] int32, steps taken; `mu`, `nu`: the first and second moments (params' tree)."""

  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates


def adam_atan2(
  lr: float,
  b1: float = 0.9,
  b2: float = 0.95,
  weight_decay: float = 0.0,
  a: float = 1.0,
  b: float = 1.0,
) -> optax.GradientTransformation:
  """The AdamATan2 rule (module docstring); `weight_decay > 0` needs `params` in `update`."""

  def init(params):
    zeros = lambda: optax.tree.zeros_like(params)  # noqa: E731
    return AdamATan2State(jnp.zeros((), jnp.int32), zeros(), zeros())

  def update(grads, state, params=None):
    count = state.count + 1
    mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
    nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, grads)
    c1 = 1 - b1 ** count.astype(jnp.float32)
    c2 = 1 - b2 ** count.astype(jnp.float32)
    step = lambda m, v: a * jnp.arctan2(m / c1, b * jnp.sqrt(v / c2))  # noqa: E731
    updates = jax.tree.map(step, mu, nu)
    if weight_decay:
      if params is None:
        raise ValueError("adam_atan2 with weight decay needs params")
      updates = jax.tree.map(lambda u, p: u + weight_decay * p, updates, params)
    updates = jax.tree.map(lambda u: -lr * u, updates)
    return updates, AdamATan2State(count, mu, nu)

  return optax.GradientTransformation(init, update)
