"""Continual backprop (Dohare et al., "Loss of plasticity in deep continual
learning"): generate-and-test replacement of low-utility hidden units.

Per hidden unit, a running contribution utility
`u <- eta * u + (1 - eta) * mean_batch |h| * sum_k |w_out[unit, k]|` and an
age. Each step, `rate * (#units older than maturity)` units per layer are due
(fractions accumulate); the due units with the lowest utility get fresh
incoming weights, zero outgoing weights, and zero utility and age.
The optimizer state of replaced weights is kept (exact for SGD).

CBP is for MLP-shaped models only: the parameters must be a list of
`{"w": [i, o], "b": [o]}` layers (an `Mlp`'s) and the model's loss must put
the post-activation hidden layers in `aux["hiddens"]` (as
`contlearn.cl.classifier` does); other models have no CBP.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from contlearn.errors import ConfigError
from contlearn.models.dense import linear_init
from contlearn.strategies.base import Strategy
from contlearn.strategies.task_model import TaskModel


class CbpState(NamedTuple):
  """Per hidden layer l: utility [W_l], age int32 [W_l], due float32 []."""

  utility: list[jax.Array]
  age: list[jax.Array]
  due: list[jax.Array]


def lowest(utility: jax.Array, eligible: jax.Array, n: jax.Array) -> jax.Array:
  """bool [W]: the n eligible units of lowest utility."""
  score = jnp.where(eligible, utility, jnp.inf)
  rank = jnp.argsort(jnp.argsort(score))
  return (rank < n) & eligible


def continual_backprop(model: TaskModel, rate: float = 1e-4, decay: float = 0.99, maturity: float = 100.0) -> Strategy:
  """CBP with replacement rate `rate`, utility decay `decay`, maturity threshold."""

  def init(params, key):
    del key
    if not isinstance(params, list):
      raise ConfigError("cbp is for MLP-shaped models: parameters must be a list of {w, b} layers")
    widths = [layer["w"].shape[1] for layer in params[:-1]]
    return CbpState(
      [jnp.zeros((w,)) for w in widths], [jnp.zeros((w,), jnp.int32) for w in widths], [jnp.zeros(()) for _ in widths]
    )

  def after_step(sstate, hp, old_params, new_params, grads, batch, aux, key):
    del old_params, grads, batch
    params = list(new_params)
    util, age, due = [], [], []
    keys = jax.random.split(key, len(params) - 1)
    for l, h in enumerate(aux["hiddens"]):
      contrib = jnp.mean(jnp.abs(h), axis=0) * jnp.sum(jnp.abs(params[l + 1]["w"]), axis=1)
      u = hp["decay"] * sstate.utility[l] + (1 - hp["decay"]) * contrib
      a = sstate.age[l] + 1
      eligible = a > hp["maturity"]
      d = sstate.due[l] + hp["rate"] * jnp.sum(eligible)
      n = jnp.floor(d)
      replace = lowest(u, eligible, n)
      fresh = linear_init(keys[l], params[l]["w"].shape[0], params[l]["w"].shape[1])
      params[l] = {
        "w": jnp.where(replace[None, :], fresh["w"], params[l]["w"]),
        "b": jnp.where(replace, 0.0, params[l]["b"]),
      }
      params[l + 1] = {"w": jnp.where(replace[:, None], 0.0, params[l + 1]["w"]), "b": params[l + 1]["b"]}
      util.append(jnp.where(replace, 0.0, u))
      age.append(jnp.where(replace, 0, a))
      due.append(d - n)
    return params, CbpState(util, age, due)

  return Strategy(
    "cbp",
    {"rate": rate, "decay": decay, "maturity": maturity},
    init,
    lambda params, sstate, hp, batch, key: model.loss(params, batch),
    after_step=after_step,
  )
