"""An exponential moving average of the weights, kept by the update rule.

`with_ema(rule, rate)` is `rule` whose state also holds `ema`, a copy of the
parameters that follows them after every step:

    ema_0 = params_0
    ema_t = rate ema_{t-1} + (1 - rate) params_t,   params_t = params_{t-1} + updates_t

as TRM's `EMAHelper` (rate 0.999, evaluation reads the average). Because it
lives in the rule's state, it is saved, restored and vmapped with the learner
state like any optimizer moment; `ema_params(opt_state)` reads it.

>>> import jax.numpy as jnp, optax
>>> rule = with_ema(optax.sgd(1.0), rate=0.5)
>>> params = jnp.zeros(())
>>> state = rule.init(params)
>>> updates, state = rule.update(jnp.array(-2.0), state, params)   # params become 2
>>> float(ema_params(state))   # 0.5 * 0 + 0.5 * 2
1.0
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax


class EMAState(NamedTuple):
  """`inner`: the wrapped rule's state; `ema`: the average of the parameters (params' tree)."""

  inner: Any
  ema: Any


def with_ema(rule: optax.GradientTransformation, rate: float) -> optax.GradientTransformation:
  """`rule`, keeping an average of the parameters at `rate` (in [0, 1)); its `update` needs `params`."""

  def init(params):
    return EMAState(rule.init(params), jax.tree.map(lambda p: p.copy(), params))

  def update(grads, state, params=None):
    if params is None:
      raise ValueError("with_ema needs params")
    updates, inner = rule.update(grads, state.inner, params)
    ema = jax.tree.map(lambda e, p, u: rate * e + (1 - rate) * (p + u), state.ema, params, updates)
    return updates, EMAState(inner, ema)

  return optax.GradientTransformation(init, update)


def ema_params(opt_state: EMAState) -> Any:
  """The averaged parameters held by a `with_ema` rule's state."""
  return opt_state.ema
