"""The strategy protocol: pure functions over one learner state.

A strategy adds to plain fine-tuning at up to four points of a step and one
point between tasks:

  * `init(params, key) -> sstate`: its own state (buffers, importances, ...);
  * `loss(params, sstate, hp, batch, key) -> (loss, aux)`: the training loss,
    e.g. cross-entropy plus a penalty, a replay term or a distillation term;
    `aux["ce"]` is the batch's cross-entropy, which training curves report;
  * `transform_grads(grads, params, sstate, hp, batch, key) -> grads`, e.g.
    the A-GEM projection;
  * `after_step(sstate, hp, old_params, new_params, grads, batch, aux, key)
    -> (params, sstate)`: buffer updates, path integrals, unit replacement;
  * `end_task(state, scenario, task, key) -> state`: Fisher information,
    teacher snapshots, GDumb's retraining.

Hyperparameters that a sweep may vary live in `hp` (a dict of float32
scalars in the learner state), never in closures, so one compiled program
serves a `vmap` over them.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from contlearn.cl.model import Mlp, cross_entropy
from contlearn.errors import ConfigError

PyTree = Any
DATA_MODES = ("current", "cumulative", "joint")


class Batch(NamedTuple):
  """A training batch.

  Attributes:
    x: float32 [B, D].
    y: int32 [B], label within the row's head.
    head: int32 [B], output head of each row.
    task: int32 [B], task each row came from.
  """

  x: jax.Array
  y: jax.Array
  head: jax.Array
  task: jax.Array


def task_loss(model: Mlp, params: PyTree, batch: Batch) -> tuple[jax.Array, dict]:
  """Cross-entropy of the batch on each row's head.

  Returns:
    `(ce, aux)`; aux holds "ce" (reported in training curves) and "hiddens",
    the hidden activations.
  """
  out, hiddens = model.features(params, batch.x)
  ce = cross_entropy(model.select_head(out, batch.head), batch.y)
  return ce, {"ce": ce, "hiddens": hiddens}


def keep_grads(grads, params, sstate, hp, batch, key):
  del params, sstate, hp, batch, key
  return grads


def keep_state(sstate, hp, old_params, new_params, grads, batch, aux, key):
  del hp, old_params, grads, batch, aux, key
  return new_params, sstate


def keep_learner(state, scenario, task, key):
  del scenario, task, key
  return state


class Strategy(NamedTuple):
  """A continual-learning strategy as pure functions (see the module docstring).

  Attributes:
    name: registry name.
    hparams: default hyperparameters (floats), stored in the learner state.
    init, loss, transform_grads, after_step, end_task: the functions above.
    data: which tasks a step samples from: "current" (the task being
      learned), "cumulative" (all tasks so far) or "joint" (all tasks).
  """

  name: str
  hparams: dict[str, float]
  init: Callable[..., PyTree]
  loss: Callable[..., tuple[jax.Array, dict]]
  transform_grads: Callable[..., PyTree] = keep_grads
  after_step: Callable[..., tuple[PyTree, PyTree]] = keep_state
  end_task: Callable[..., Any] = keep_learner
  data: str = "current"


def naive(model: Mlp, data: str = "current") -> Strategy:
  """Plain fine-tuning; with `data="cumulative"` or `"joint"`, the baselines
  Cumulative and Joint (same loss, different sampling of tasks)."""
  if data not in DATA_MODES:
    raise ConfigError(f"naive: data must be one of {DATA_MODES}, got {data!r}")
  return Strategy(
      name={"current": "naive", "cumulative": "cumulative", "joint": "joint"}[data],
      hparams={},
      init=lambda params, key: (),
      loss=lambda params, sstate, hp, batch, key: task_loss(model, params, batch),
      data=data)


def tree_vdot(a: PyTree, b: PyTree) -> jax.Array:
  """Sum over leaves of elementwise products: <a, b>."""
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
