"""A classifier learning a continual-learning scenario, as an engine `Learner`.

>>> import jax, jax.numpy as jnp, optax
>>> from contlearn import engine
>>> from contlearn import strategies
>>> from contlearn.cl import classifier, datasets, scenarios
>>> sc = jax.device_put(scenarios.split(datasets.load("digits"), 5, "task"))  # 5 tasks of 2 digits
>>> model = Mlp(sc.in_dim, (32,), sc.head_size, sc.n_heads)
>>> strategy = strategies.make("ewc", classifier(model))
>>> learner = classifier_learner(model, strategy, optax.sgd(0.1))
>>> state = engine.init(learner, jax.random.key(0), hparams={"strength": 100.0})
>>> calls = compile_calls(learner, model, strategy, state, eval_every=50)
>>> block = schedules.task(0, steps=100, batch=32)             # int32 [100, 32]
>>> state, (ce, acc) = calls.train(state, block, sc)          # ce [100], acc [2, 5]
>>> ce.shape, acc.shape
((100,), (2, 5))
>>> state = calls.end_task(state, sc, jnp.int32(0))           # EWC's Fisher of task 0
>>> bool(calls.evaluate(state, sc)[0] > 0.9)                  # accuracy on task 0's test rows
True

The engine's terms: `x` is one row of the task schedule (int32 [B], the task
each row of the batch is drawn from), `env` is the `Scenario` (every task's
padded train and test rows), the probe is the accuracy on every task's test
rows, evaluated inside the compiled call every `eval_every` steps. The
strategy's state lives in `LearnerState.strategy`, its hyperparameters in
`LearnerState.hparams` (traced, so seeds x hyperparameters run as lanes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from contlearn import engine
from contlearn.cl import schedules
from contlearn.cl.model import Mlp
from contlearn.cl.scenarios import Scenario
from contlearn.cl.task_model import Batch
from contlearn.errors import ConfigError
from contlearn.state import LearnerState, new_state
from contlearn.strategies.base import Strategy, strategy_step
from contlearn.strategies.task_end import compile_end_of_task

PyTree = Any


def accuracy(model: Mlp, params: PyTree, scenario: Scenario) -> jax.Array:
  """Accuracy on every task's (valid) test rows: float32 [T]."""

  def one(x, y, n, head):
    pred = jnp.argmax(model.logits(params, x, jnp.full(x.shape[:1], head)), axis=-1)
    valid = jnp.arange(x.shape[0]) < n
    return jnp.sum((pred == y) & valid) / jnp.maximum(n, 1)

  return scenario.map_test_rows(one)


def sample_batch(scenario: Scenario, tasks: jax.Array, key: jax.Array) -> Batch:
  """Draws one row (with replacement) from each row's task. tasks: int32 [B]."""
  n = scenario.train_n[tasks]
  idx = jnp.floor(jax.random.uniform(key, tasks.shape) * n).astype(jnp.int32)
  idx = jnp.minimum(idx, n - 1)
  return Batch(*scenario.train_rows(tasks, idx), scenario.head[tasks], tasks)


def classifier_learner(model: Mlp, strategy: Strategy, optimizer: optax.GradientTransformation) -> engine.Learner:
  """The learner of a classifier trained with `strategy` and `optimizer`.

  `init(key)`: parameters from `split(key, 3)[0]`, the strategy's state from
  `[1]`, the run's key `[2]`; the strategy's default hyperparameters.
  `step(state, tasks, scenario)`: one step on a batch drawn from `tasks`
  (int32 [B]) with the key `fold_in(state.key, state.step)`; its metric is
  the batch's cross-entropy (float32 [], without penalties or replay terms).
  """

  def init(key: jax.Array) -> LearnerState:
    k_params, k_strategy, k_run = jax.random.split(key, 3)
    params = model.init(k_params)
    return new_state(
      params, optimizer.init(params), k_run, strategy=strategy.init(params, k_strategy), hparams=strategy.hparams
    )

  def step(state: LearnerState, tasks: jax.Array, scenario: Scenario) -> tuple[LearnerState, jax.Array]:
    k_batch, *keys = jax.random.split(jax.random.fold_in(state.key, state.step), 4)
    batch = sample_batch(scenario, tasks, k_batch)
    params, opt_state, strategy_state, aux, _ = strategy_step(
      strategy, optimizer, state.params, state.opt_state, state.strategy, state.hparams, batch, keys
    )
    return state.replace(params=params, opt_state=opt_state, strategy=strategy_state, step=state.step + 1), aux["ce"]

  return engine.Learner(init, step)


def accuracy_probe(model: Mlp) -> Callable[[LearnerState, Scenario], jax.Array]:
  """The engine probe: accuracy of the state on every task, float32 [T]."""
  return lambda state, scenario: accuracy(model, state.params, scenario)


class Calls(NamedTuple):
  """The compiled calls of a classifier learner (states shaped like one example).

  Attributes:
    train: `(state, schedule int32 [S, B], scenario) -> (state, (ce [S], acc
      [S // eval_every, T]))`, the state donated; with lanes every output
      gets a leading lane axis [L].
    end_task: `(state, scenario, task int32 []) -> state`, the state donated.
    evaluate: `(state, scenario) -> accuracy [T]` (`[L, T]` with lanes).
  """

  train: Callable[..., tuple[LearnerState, Any]]
  end_task: Callable[..., LearnerState]
  evaluate: Callable[..., jax.Array]


def compile_calls(
  learner: engine.Learner, model: Mlp, strategy: Strategy, state: LearnerState, *, eval_every: int, lanes: bool = False
) -> Calls:
  """The engine's compiled block call (probed every `eval_every` steps) and boundary calls."""
  if eval_every < 1:
    raise ConfigError(f"eval_every must be >= 1, got {eval_every}")
  probe = accuracy_probe(model)
  return Calls(
    train=engine.compile(learner, state, lanes=lanes, probe=probe, every=eval_every),
    end_task=compile_end_of_task(strategy, lanes=lanes),
    evaluate=engine.compile_call(probe, lanes=lanes, donate=False),
  )


def schedule(strategy: Strategy, task: int, n_tasks: int, steps: int, batch: int, seed: int = 0) -> np.ndarray:
  """The schedule for learning `task` (int32 [steps, batch]), following the
  strategy's data access: the task alone, every task so far, or all tasks."""
  if strategy.data == "cumulative":
    return schedules.cumulative(task, steps, batch, seed)
  if strategy.data == "joint":
    return schedules.joint(n_tasks, steps, batch, seed)
  return schedules.task(task, steps, batch)
