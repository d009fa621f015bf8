"""Update rules: optax-style `(init, update)` pairs, and levels with periods.

An update rule is an `optax.GradientTransformation`: `init(params) -> state`
and `update(grads, state, params) -> (updates, state)`, pure functions over a
typed state. Any optax optimizer is a rule as it is. This module adds what a
learner made of several levels needs:

* `periodic(rule, period)`: a level that accumulates its gradient for
  `period` steps and applies `rule` to the sum on every `period`-th step;
  in between its parameters do not move.
* `levels(rules, labels)`: one rule per level, each over the parameters its
  label names (`optax.multi_transform`).

>>> import jax.numpy as jnp, optax
>>> params = {"w": jnp.ones(2), "cms": jnp.ones(2)}
>>> labels = lambda p: {"w": "outer", "cms": "cms_0"}   # a level name per leaf
>>> rule = levels({"outer": optax.adam(1e-3), "cms_0": periodic(optax.sgd(1.0), 2)}, labels)
>>> state = rule.init(params)
>>> grads = {"w": jnp.ones(2), "cms": jnp.ones(2)}
>>> for _ in range(2):
...   updates, state = rule.update(grads, state, params)
...   print(updates["cms"].tolist())   # the slow level steps on its 2nd step, with the sum
[0.0, 0.0]
[-2.0, -2.0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from contlearn.errors import ConfigError

UpdateRule = optax.GradientTransformation


class PeriodicState(NamedTuple):
  """State of `periodic`.

  Attributes:
    count: [] int32, steps seen since the level last updated.
    accumulated: gradients summed since the level last updated (params' tree).
    inner: the wrapped rule's state.
  """

  count: jax.Array
  accumulated: Any
  inner: Any


def periodic(rule: UpdateRule, period: int, average: bool = False) -> UpdateRule:
  """Applies `rule` every `period` steps to the gradient accumulated since.

  On steps `period, 2 * period, ...` (counting from 1) the update is
  `rule.update(G, ...)` with `G` the sum of the last `period` gradients (their
  mean if `average`); on every other step the update is zero and `rule`'s
  state does not change. `period=1` is `rule` itself.

  Args:
    rule: the level's update rule (any optax transformation).
    period: steps between updates, >= 1.
    average: divide the accumulated gradient by `period`.

  Returns:
    An update rule with state `PeriodicState`.
  """
  if not isinstance(period, int) or period < 1:
    raise ConfigError(f"a level's period must be a positive integer, got {period!r}")

  def init(params):
    return PeriodicState(
      count=jnp.zeros((), jnp.int32),
      accumulated=optax.tree.zeros_like(params),
      inner=rule.init(params),
    )

  def update(grads, state, params=None):
    accumulated = jax.tree.map(jnp.add, state.accumulated, grads)
    count = state.count + 1
    fire = count >= period
    signal = accumulated
    if average:
      signal = jax.tree.map(lambda g: g / period, accumulated)

    def apply_rule(_):
      updates, inner = rule.update(signal, state.inner, params)
      return updates, inner

    def hold(_):
      return optax.tree.zeros_like(grads), state.inner

    updates, inner = jax.lax.cond(fire, apply_rule, hold, None)
    accumulated = jax.tree.map(lambda a: jnp.where(fire, jnp.zeros_like(a), a), accumulated)
    count = jnp.where(fire, 0, count)
    return updates, PeriodicState(count, accumulated, inner)

  return optax.GradientTransformation(init, update)


class ResetState(NamedTuple):
  """State of `reset_every`: `count` [] int32 steps since the last reset; `inner`."""

  count: jax.Array
  inner: Any


def reset_every(rule: UpdateRule, period: int) -> UpdateRule:
  """`rule`, except that every `period`-th step sets the parameters to zero.

  On steps `period, 2 * period, ...` the update is `-params` (whatever `rule`
  proposed) and `rule`'s state starts afresh; this is how a fast level's
  adaptation is wiped when the slower level above it takes its step
  (the "nested" Continuum Memory System).
  """
  if not isinstance(period, int) or period < 1:
    raise ConfigError(f"a reset period must be a positive integer, got {period!r}")

  def init(params):
    return ResetState(jnp.zeros((), jnp.int32), rule.init(params))

  def update(grads, state, params=None):
    if params is None:
      raise ValueError("reset_every needs params")
    updates, inner = rule.update(grads, state.inner, params)
    count = state.count + 1
    reset = count >= period
    updates = jax.tree.map(lambda u, p: jnp.where(reset, -p, u), updates, params)
    inner = select_tree(reset, rule.init(params), inner)
    return updates, ResetState(jnp.where(reset, 0, count), inner)

  return optax.GradientTransformation(init, update)


def select_tree(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
  """`on_true` where the scalar `pred` holds, else `on_false`, leaf by leaf."""
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def levels(rules: dict[str, UpdateRule], labels: Any | Callable[[Any], Any]) -> UpdateRule:
  """One update rule per level; `labels` maps each parameter to its level.

  Args:
    rules: level name -> update rule (wrap in `periodic` for a slow level).
    labels: a pytree like the params with a level name at every leaf, or a
      function params -> such a pytree.
  """
  return optax.multi_transform(rules, labels)


def _optimizers() -> dict[str, Callable[[float], UpdateRule]]:
  from contlearn import optim  # the optimizers-as-memories

  return {
    "sgd": optax.sgd,
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "adam": optax.adam,
    "adamw": optax.adamw,
    "lion": optax.lion,
    "momentum_memory": lambda lr: optim.momentum(alpha=0.9, lr=lr),
    "preconditioned_momentum": lambda lr: optim.preconditioned_momentum(lr=lr),
    "delta_momentum": lambda lr: optim.delta_momentum(lr=lr),
    "deep_momentum": lambda lr: optim.deep_momentum(lr=lr),
    "muon": lambda lr: optim.muon(lr=lr),
    "m3": lambda lr: optim.m3(lr=lr),
  }


def optimizer_names() -> list[str]:
  """The names `optimizer` accepts."""
  return sorted(_optimizers())


# Rules that orthogonalise whole matrices: as is the practice for Muon, they
# act on hidden weight matrices only; embeddings, output layer, norms and
# biases take Adam.
ORTHOGONALISED = ("muon", "m3")


def optimizer(
  name: str,
  lr: float,
  clip: float = 0.0,
  *,
  is_hidden_matrix: Callable[[Any, jax.Array], bool] | None = None,
  other_lr: float = 3e-3,
) -> UpdateRule:
  """A named optimizer, optionally after global-norm clipping.

  Args:
    name: an optax alias ("sgd", "momentum", "adam", "adamw", "lion") or a
      rule of `contlearn.optim` ("momentum_memory", "preconditioned_momentum",
      "delta_momentum", "deep_momentum", "muon", "m3").
    lr: its learning rate.
    clip: global gradient-norm clip (0: none).
    is_hidden_matrix: `(key_path, leaf) -> bool`; with it, "muon" and "m3"
      update only those leaves and Adam at `other_lr` updates the rest.
    other_lr: Adam's rate for the leaves an orthogonalising rule leaves out.
  """
  optimizers = _optimizers()
  if name not in optimizers:
    raise ConfigError(f"optimizer {name!r} is unknown; choose one of {', '.join(sorted(optimizers))}")
  rule = optimizers[name](lr)
  if name in ORTHOGONALISED and is_hidden_matrix is not None:

    def labels(params):
      kind = lambda path, leaf: "matrix" if is_hidden_matrix(path, leaf) else "other"
      return jax.tree_util.tree_map_with_path(kind, params)

    rule = optax.multi_transform({"matrix": rule, "other": optax.adam(other_lr)}, labels)
  return optax.chain(optax.clip_by_global_norm(clip), rule) if clip > 0 else rule
