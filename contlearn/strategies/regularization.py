"""Quadratic-penalty strategies: L2, EWC, online EWC, SI and MAS.

All keep a penalty `sum_k w_k (theta_k - a_k)^2` summed over past tasks.
Stored as the moments `W = sum w`, `WA = sum w*a`, `WAA = sum w*a^2`, any
number of past anchors fits in three parameter-sized trees:
`sum_k w_k (theta - a_k)^2 = W theta^2 - 2 WA theta + WAA`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from contlearn.errors import ConfigError
from contlearn.strategies import importance
from contlearn.strategies.base import Strategy
from contlearn.strategies.task_model import TaskModel

PyTree = Any


class Quadratic(NamedTuple):
  """Moments of the penalty, each shaped like the parameters."""

  w: PyTree
  wa: PyTree
  waa: PyTree


def quadratic_init(params: PyTree) -> Quadratic:
  z = jax.tree.map(jnp.zeros_like, params)
  return Quadratic(z, z, z)


def quadratic_value(q: Quadratic, params: PyTree) -> jax.Array:
  """sum over leaves of W theta^2 - 2 WA theta + WAA (>= 0 up to rounding)."""
  per_leaf = jax.tree.map(lambda w, wa, waa, p: jnp.sum(w * p * p - 2 * wa * p + waa), q.w, q.wa, q.waa, params)
  return sum(jax.tree.leaves(per_leaf))


def add_anchor(q: Quadratic, weight: PyTree, anchor: PyTree) -> Quadratic:
  """Adds `weight (theta - anchor)^2` to the penalty (separate anchors per task)."""
  return Quadratic(
    jax.tree.map(jnp.add, q.w, weight),
    jax.tree.map(lambda s, w, a: s + w * a, q.wa, weight, anchor),
    jax.tree.map(lambda s, w, a: s + w * a * a, q.waa, weight, anchor),
  )


def set_anchor(weight: PyTree, anchor: PyTree) -> Quadratic:
  """The penalty `weight (theta - anchor)^2` alone (one anchor: the latest)."""
  return add_anchor(quadratic_init(anchor), weight, anchor)


def _penalized(model: TaskModel, scale: float, strength: str):
  def loss(params, sstate, hp, batch, key):
    del key
    base, aux = model.loss(params, batch)
    return base + scale * hp[strength] * quadratic_value(sstate.penalty, params), aux

  return loss


class PenaltyState(NamedTuple):
  penalty: Quadratic


def l2(model: TaskModel, strength: float = 1.0) -> Strategy:
  """L2 to the parameters at the end of the last task: strength/2 ||theta - theta*||^2."""

  def end_task(state, env, task, key):
    del env, task, key
    ones = jax.tree.map(jnp.ones_like, state.params)
    return state.replace(strategy=PenaltyState(set_anchor(ones, state.params)))

  return Strategy(
    "l2",
    {"strength": strength},
    lambda params, key: PenaltyState(quadratic_init(params)),
    _penalized(model, 0.5, "strength"),
    end_task=end_task,
  )


def ewc(
  model: TaskModel,
  strength: float = 1.0,
  online: bool = False,
  decay: float = 1.0,
  n_fisher: int = 512,
  chunk: int = 32,
) -> Strategy:
  """EWC: strength/2 sum_t F_t (theta - theta_t)^2 with each task's Fisher F_t.

  With `online=True` (online EWC, Schwarz et al.), one running Fisher
  `F <- decay * F + F_t` anchored at the latest parameters.

  Args:
    model: the model as strategies see it.
    strength: lambda.
    online: online EWC instead of one anchor per task.
    decay: gamma of online EWC (ignored otherwise).
    n_fisher: rows of the task (`model.task_rows`) used to estimate F_t, the
      empirical Fisher of each row (a multiple of `chunk`).
    chunk: rows per vmapped chunk of per-sample gradients.
  """

  def end_task(state, env, task, key):
    rows = model.task_rows(env, task, n_fisher, key)
    f = importance.fisher(model, state.params, rows, chunk)
    q = state.strategy.penalty
    if online:
      w = jax.tree.map(lambda old, new: state.hparams["decay"] * old + new, q.w, f)
      q = set_anchor(w, state.params)
    else:
      q = add_anchor(q, f, state.params)
    return state.replace(strategy=PenaltyState(q))

  hp = {"strength": strength, **({"decay": decay} if online else {})}
  return Strategy(
    "online_ewc" if online else "ewc",
    hp,
    lambda params, key: PenaltyState(quadratic_init(params)),
    _penalized(model, 0.5, "strength"),
    end_task=end_task,
  )


def mas(model: TaskModel, strength: float = 1.0, alpha: float = 0.5, n_samples: int = 512, chunk: int = 32) -> Strategy:
  """MAS (Aljundi et al.): strength * sum Omega (theta - theta*)^2.

  Omega <- alpha * Omega + (1 - alpha) * Omega_t after each task (the first
  task sets Omega = Omega_1), anchored at the latest parameters.
  """

  class MasState(NamedTuple):
    penalty: Quadratic
    seen: jax.Array  # float32 [], tasks consolidated so far

  def end_task(state, env, task, key):
    rows = model.task_rows(env, task, n_samples, key)
    om = importance.mas(model, state.params, rows, chunk)
    s = state.strategy
    a = jnp.where(s.seen > 0, state.hparams["alpha"], 0.0)
    w = jax.tree.map(lambda old, new: a * old + (1 - a) * new, s.penalty.w, om)
    return state.replace(strategy=MasState(set_anchor(w, state.params), s.seen + 1))

  return Strategy(
    "mas",
    {"strength": strength, "alpha": alpha},
    lambda params, key: MasState(quadratic_init(params), jnp.zeros(())),
    _penalized(model, 1.0, "strength"),
    end_task=end_task,
  )


class SiState(NamedTuple):
  """SI state: the penalty, the running path integral and the task's start."""

  penalty: Quadratic
  omega: PyTree  # path integral sum_s -g_s * (theta_{s+1} - theta_s) this task
  start: PyTree  # parameters at the start of the task


PATH_GRADIENTS = ("penalised", "unregularised")


def si(model: TaskModel, strength: float = 1.0, xi: float = 0.1, path_gradient: str = "penalised") -> Strategy:
  """Synaptic Intelligence (Zenke et al.): c * sum Omega (theta - theta*)^2.

  Per step, omega += -g * delta_theta; at the end of a task
  Omega += omega / (Delta_task^2 + xi), anchored at the latest parameters.

  Args:
    model: the model as strategies see it.
    strength: c.
    xi: the damping xi of Omega's denominator.
    path_gradient: which gradient g the path integral sums. "penalised"
      (the default): the gradient the optimizer receives, the task loss's
      plus the penalty's, as van de Ven et al.'s and Avalanche's loops do.
      "unregularised": the task loss's alone, as Zenke et al.'s code does;
      the penalty's gradient at the step's starting parameters (the
      gradient of `quadratic_value`, elementwise, not a second backward
      pass through the model) is subtracted.
  """
  if path_gradient not in PATH_GRADIENTS:
    raise ConfigError(f"si: path_gradient must be one of {PATH_GRADIENTS}, got {path_gradient!r}")

  def init(params, key):
    del key
    return SiState(quadratic_init(params), jax.tree.map(jnp.zeros_like, params), params)

  def task_gradient(grads, sstate, hp, params):
    if path_gradient == "penalised":
      return grads
    penalty_grads = jax.grad(quadratic_value, argnums=1)(sstate.penalty, params)
    return jax.tree.map(lambda g, pg: g - hp["strength"] * pg, grads, penalty_grads)

  def after_step(sstate, hp, old_params, new_params, grads, batch, aux, key):
    del batch, aux, key
    g = task_gradient(grads, sstate, hp, old_params)
    omega = jax.tree.map(lambda o, gi, a, b: o - gi * (b - a), sstate.omega, g, old_params, new_params)
    return new_params, sstate._replace(omega=omega)

  def end_task(state, env, task, key):
    del env, task, key
    s = state.strategy
    big = jax.tree.map(
      lambda w, o, p, p0: w + o / (jnp.square(p - p0) + state.hparams["xi"]),
      s.penalty.w,
      s.omega,
      state.params,
      s.start,
    )
    return state.replace(
      strategy=SiState(set_anchor(big, state.params), jax.tree.map(jnp.zeros_like, s.omega), state.params)
    )

  return Strategy(
    "si",
    {"strength": strength, "xi": xi},
    init,
    _penalized(model, 1.0, "strength"),
    after_step=after_step,
    end_task=end_task,
  )
