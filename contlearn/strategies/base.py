"""The strategy protocol: pure functions over one learner state, and the step that applies them.

A strategy adds to plain fine-tuning at up to four points of a step and one
point between tasks:

  * `init(params, key) -> sstate`: its own state (buffers, importances, ...);
  * `loss(params, sstate, hp, batch, key) -> (loss, aux)`: the training loss,
    e.g. the model's loss plus a penalty, a replay term or a distillation
    term; `aux` is the model's (`aux["ce"]` is the batch's cross-entropy);
  * `transform_grads(grads, params, sstate, hp, batch, key) -> grads`, e.g.
    the A-GEM projection;
  * `after_step(sstate, hp, old_params, new_params, grads, batch, aux, key)
    -> (params, sstate)`: buffer updates, path integrals, unit replacement;
  * `end_task(state, env, task, key) -> state`: Fisher information, teacher
    snapshots, GDumb's retraining; `state` is a `contlearn.state.LearnerState`
    (the strategy's state is `state.strategy`), `env` the boundary call's data.

`strategy_step` is the one training step every learner with a strategy runs
(the classifier's and the sequence learner's). Strategies reach the model
only through a `TaskModel` (`contlearn.strategies.task_model`), so each
works on any model that fills one in. Hyperparameters that a sweep may vary
live in `hp` (a dict of float32 scalars in the learner state), never in
closures, so one compiled program serves a `vmap` over them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from contlearn.errors import ConfigError
from contlearn.strategies.task_model import TaskModel

PyTree = Any
DATA_MODES = ("current", "cumulative", "joint")
# fold_in tag of the end-of-task key: fold_in(fold_in(key, step), END_OF_TASK).
END_OF_TASK = 2**31 - 1


def keep_grads(grads, params, sstate, hp, batch, key):
  del params, sstate, hp, batch, key
  return grads


def keep_state(sstate, hp, old_params, new_params, grads, batch, aux, key):
  del hp, old_params, grads, batch, aux, key
  return new_params, sstate


def keep_learner(state, env, task, key):
  del env, task, key
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


def strategy_step(
  strategy: Strategy,
  optimizer: optax.GradientTransformation,
  params: PyTree,
  opt_state: PyTree,
  sstate: PyTree,
  hp: dict[str, jax.Array],
  batch: PyTree,
  keys: tuple[jax.Array, jax.Array, jax.Array],
) -> tuple[PyTree, PyTree, PyTree, dict, PyTree]:
  """One step of learning `batch` with `strategy`: its loss's gradient, its
  transform, the optimizer's update, its after-step update.

  `keys` are the loss's, the transform's and the after-step's keys (e.g.
  `jax.random.split(key, 3)`).

  Returns:
    `(params, opt_state, sstate, aux, grads)`: `aux` is the strategy loss's
    (the model's, `aux["ce"]` the batch's cross-entropy), `grads` the
    gradient the optimizer received.
  """
  k_loss, k_grad, k_after = keys
  grads, aux = jax.grad(strategy.loss, has_aux=True)(params, sstate, hp, batch, k_loss)
  grads = strategy.transform_grads(grads, params, sstate, hp, batch, k_grad)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  new_params = optax.apply_updates(params, updates)
  new_params, sstate = strategy.after_step(sstate, hp, params, new_params, grads, batch, aux, k_after)
  return new_params, opt_state, sstate, aux, grads


def end_of_task(strategy: Strategy) -> Callable[[Any, Any, Any], Any]:
  """`finish(state, env, task) -> state`: the strategy's end of task with the
  key `fold_in(fold_in(state.key, state.step), END_OF_TASK)`; pure, for
  `contlearn.engine.compile_call`."""

  def finish(state, env, task):
    key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), END_OF_TASK)
    return strategy.end_task(state, env, jnp.asarray(task, jnp.int32), key)

  return finish


def naive(model: TaskModel, data: str = "current") -> Strategy:
  """Plain fine-tuning; with `data="cumulative"` or `"joint"`, the baselines
  Cumulative and Joint (same loss, different sampling of tasks)."""
  if data not in DATA_MODES:
    raise ConfigError(f"naive: data must be one of {DATA_MODES}, got {data!r}")
  return Strategy(
    name={"current": "naive", "cumulative": "cumulative", "joint": "joint"}[data],
    hparams={},
    init=lambda params, key: (),
    loss=lambda params, sstate, hp, batch, key: model.loss(params, batch),
    data=data,
  )


def tree_vdot(a: PyTree, b: PyTree) -> jax.Array:
  """Sum over leaves of elementwise products: <a, b>."""
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
