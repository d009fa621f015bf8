"""The learner as one pytree, and each task's training as one compiled scan.

>>> trainer = Trainer(Mlp(784, (400, 400), 10), strategies.make("ewc", classifier(model)),
...                   optax.sgd(0.1), eval_every=50)
>>> state = trainer.init(jax.random.key(0), {"strength": 100.0})
>>> sched = schedules.task(0, steps=500, batch=128)
>>> state, curve = trainer.train(state, scenario, sched)   # curve.acc: [10, T]
>>> state = trainer.end_task(state, scenario, 0)

`train` is jitted once per (schedule shape, scenario shape); the learner
state is donated. Evaluation on every task's test rows runs inside the scan
every `eval_every` steps, so a task is a single device program with no host
round trip. `jax.vmap(trainer.train, in_axes=(0, None, None))` runs many
seeds or hyperparameters side by side.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from contlearn.cl import schedules
from contlearn.cl.model import Mlp
from contlearn.cl.scenarios import Scenario
from contlearn.cl.strategies.base import Strategy
from contlearn.cl.strategies.classifier import Batch
from contlearn.errors import ConfigError

PyTree = Any


@struct.dataclass
class LearnerState:
  """Everything a continual learner carries.

  Attributes:
    params: model parameters.
    opt_state: optax state of the optimizer.
    strategy: the strategy's state (buffer, importances, teacher, ...).
    hparams: dict of float32 [] strategy hyperparameters.
    step: int32 [], steps taken over the whole stream.
    key: PRNG key; step s uses `fold_in(key, step)`.
  """

  params: PyTree
  opt_state: PyTree
  strategy: PyTree
  hparams: dict[str, jax.Array]
  step: jax.Array
  key: jax.Array


class Curve(NamedTuple):
  """What one `train` call reports, per evaluation.

  Attributes:
    acc: float32 [S // eval_every, T], accuracy on each task's test rows.
    loss: float32 [S // eval_every], mean cross-entropy of the training
      batches since the last evaluation (without penalties or replay terms).
  """

  acc: jax.Array
  loss: jax.Array


def accuracy(model: Mlp, params: PyTree, scenario: Scenario) -> jax.Array:
  """Accuracy on every task's (valid) test rows: float32 [T]."""
  def one(x, y, n, head):
    pred = jnp.argmax(model.logits(params, x, jnp.full(x.shape[:1], head)), axis=-1)
    valid = jnp.arange(x.shape[0]) < n
    return jnp.sum((pred == y) & valid) / jnp.maximum(n, 1)
  return jax.vmap(one)(scenario.test_x, scenario.test_y, scenario.test_n, scenario.head)


def sample_batch(scenario: Scenario, tasks: jax.Array, key: jax.Array) -> Batch:
  """Draws one row (with replacement) from each row's task. tasks: int32 [B]."""
  n = scenario.train_n[tasks]
  idx = jnp.floor(jax.random.uniform(key, tasks.shape) * n).astype(jnp.int32)
  idx = jnp.minimum(idx, n - 1)
  return Batch(scenario.train_x[tasks, idx], scenario.train_y[tasks, idx],
               scenario.head[tasks], tasks)


@dataclasses.dataclass(frozen=True)
class Trainer:
  """Binds a model, a strategy and an optax optimizer into compiled functions.

  Attributes:
    model: the classifier.
    strategy: from `contlearn.cl.strategies.make`.
    optimizer: any optax GradientTransformation, used unchanged.
    eval_every: steps between evaluations inside `train`.
  """

  model: Mlp
  strategy: Strategy
  optimizer: optax.GradientTransformation
  eval_every: int = 100

  def __post_init__(self):
    if self.eval_every < 1:
      raise ConfigError(f"Trainer: eval_every must be >= 1, got {self.eval_every}")

  def init(self, key: jax.Array, hparams: dict[str, Any] | None = None) -> LearnerState:
    """A fresh learner; `hparams` overrides the strategy's defaults (may be traced)."""
    hp = dict(self.strategy.hparams)
    for k, v in (hparams or {}).items():
      if k not in hp:
        raise ConfigError(f"strategy {self.strategy.name!r} has no hyperparameter {k!r}; "
                          f"it has {sorted(hp)}")
      hp[k] = v
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}
    k_params, k_strategy, k_run = jax.random.split(key, 3)
    params = self.model.init(k_params)
    state = LearnerState(params, self.optimizer.init(params),
                         self.strategy.init(params, k_strategy), hp,
                         jnp.zeros((), jnp.int32), k_run)
    # Strategies may alias leaves (e.g. a teacher equal to the parameters);
    # copies keep every leaf a distinct buffer, as donation requires.
    return jax.tree.map(lambda x: jnp.array(x, copy=True), state)

  def step(self, state: LearnerState, scenario: Scenario, tasks: jax.Array
           ) -> tuple[LearnerState, jax.Array]:
    """One training step on a batch drawn from `tasks` (int32 [B]); returns the batch CE."""
    s = self.strategy
    k_batch, k_loss, k_grad, k_after = jax.random.split(
        jax.random.fold_in(state.key, state.step), 4)
    batch = sample_batch(scenario, tasks, k_batch)
    grads, aux = jax.grad(s.loss, has_aux=True)(
        state.params, state.strategy, state.hparams, batch, k_loss)
    grads = s.transform_grads(grads, state.params, state.strategy, state.hparams, batch, k_grad)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params, sstate = s.after_step(state.strategy, state.hparams, state.params, params, grads,
                                  batch, aux, k_after)
    return state.replace(params=params, opt_state=opt_state, strategy=sstate,
                         step=state.step + 1), aux["ce"]

  def run(self, state: LearnerState, scenario: Scenario, schedule: jax.Array
          ) -> tuple[LearnerState, Curve]:
    """Trains along `schedule` (int32 [S, B], S a multiple of eval_every); not jitted."""
    steps, batch = schedule.shape
    if steps % self.eval_every:
      raise ConfigError(f"Trainer.train: schedule has {steps} steps, not a multiple of "
                        f"eval_every={self.eval_every}")
    chunks = schedule.reshape(steps // self.eval_every, self.eval_every, batch)

    def chunk(state, tasks):
      state, losses = jax.lax.scan(lambda st, t: self.step(st, scenario, t), state, tasks)
      return state, (accuracy(self.model, state.params, scenario), jnp.mean(losses))

    state, (acc, loss) = jax.lax.scan(chunk, state, chunks)
    return state, Curve(acc, loss)

  @functools.cached_property
  def train(self):
    """Jitted `run` with the learner state donated."""
    return jax.jit(self.run, donate_argnums=0)

  def finish_task(self, state: LearnerState, scenario: Scenario, task: jax.Array
                  ) -> LearnerState:
    """The strategy's end-of-task update (not jitted); `task` is an int32 []."""
    key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), 2**31 - 1)
    return self.strategy.end_task(state, scenario, jnp.asarray(task, jnp.int32), key)

  @functools.cached_property
  def end_task(self):
    """Jitted `finish_task` with the state donated; `task` is traced (one compile)."""
    return jax.jit(self.finish_task, donate_argnums=0)

  @functools.cached_property
  def evaluate(self):
    """Jitted accuracy of the state on every task: float32 [T]."""
    return jax.jit(lambda state, scenario: accuracy(self.model, state.params, scenario))

  def init_lanes(self, keys: jax.Array, hparams: dict[str, Any] | None = None
                 ) -> LearnerState:
    """L independent learners stacked on a leading axis: keys [L], hparams {name: [L]}."""
    return jax.vmap(self.init)(keys, hparams or {})

  @functools.cached_property
  def train_lanes(self):
    """`train` over learners stacked by `init_lanes`: acc [L, S // eval_every, T]."""
    return jax.jit(jax.vmap(self.run, in_axes=(0, None, None)), donate_argnums=0)

  @functools.cached_property
  def end_task_lanes(self):
    """`end_task` over stacked learners."""
    return jax.jit(jax.vmap(self.finish_task, in_axes=(0, None, None)), donate_argnums=0)

  def schedule(self, task: int, n_tasks: int, steps: int, batch: int, seed: int = 0
               ) -> np.ndarray:
    """The schedule for learning `task`, following the strategy's data access."""
    if self.strategy.data == "cumulative":
      return schedules.cumulative(task, steps, batch, seed)
    if self.strategy.data == "joint":
      return schedules.joint(n_tasks, steps, batch, seed)
    return schedules.task(task, steps, batch)
