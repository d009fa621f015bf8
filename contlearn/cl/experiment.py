"""Host driver: one continual-learning run over a scenario, seeds as vmapped lanes.

>>> cfg = RunConfig(strategy="ewc", hparams=(("strength", 1e3),))
>>> result = run(cfg, build_scenario(cfg))
>>> result.summary["acc"]  # mean over seeds of the average accuracy
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from contlearn.cl import datasets, metrics, scenarios
from contlearn.cl import strategies as strategies_lib
from contlearn.cl.learner import Trainer
from contlearn.cl.model import Mlp
from contlearn import rules
from contlearn.errors import ConfigError

@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One run: data, scenario, model, optimizer, strategy and schedule.

  Attributes:
    dataset: a `datasets.load` name ("mnist_5k", "digits", "mnist1d",
      "tfds:mnist", ...).
    stream: "split", "permuted", "rotated" or "concept_shift".
    kind: "task", "domain" or "class".
    n_tasks: number of tasks.
    hidden: hidden layer widths.
    optimizer: "sgd" or "adam".
    lr: learning rate.
    steps_per_task: training steps per task.
    batch: batch size.
    eval_every: steps between evaluations inside each task's scan.
    max_test: test rows per task used for evaluation.
    strategy: a `strategies.make` name.
    strategy_kwargs: (name, value) pairs for the strategy factory.
    hparams: (name, value) pairs overriding the strategy's hyperparameters.
    seeds: seeds, run side by side as vmapped lanes.
  """

  dataset: str = "mnist_5k"
  stream: str = "split"
  kind: str = "class"
  n_tasks: int = 5
  hidden: tuple[int, ...] = (400, 400)
  optimizer: str = "adam"
  lr: float = 1e-3
  steps_per_task: int = 500
  batch: int = 128
  eval_every: int = 100
  max_test: int = 1000
  strategy: str = "naive"
  strategy_kwargs: tuple[tuple[str, Any], ...] = ()
  hparams: tuple[tuple[str, float], ...] = ()
  seeds: tuple[int, ...] = (0,)

  def __post_init__(self):
    if self.optimizer not in rules.optimizer_names():
      raise ConfigError(f"RunConfig.optimizer must be one of {rules.optimizer_names()}, "
                        f"got {self.optimizer!r}")
    if self.steps_per_task % self.eval_every:
      raise ConfigError(f"RunConfig: steps_per_task={self.steps_per_task} is not a multiple "
                        f"of eval_every={self.eval_every}")


@dataclasses.dataclass
class Result:
  """Per seed: R [L, T, T], trajectory acc [L, N, T]; `ends` [T]; summary means."""

  config: RunConfig
  matrix: np.ndarray
  trajectory: np.ndarray
  ends: np.ndarray
  summary: dict[str, float]


def build_scenario(cfg: RunConfig, ds: datasets.Dataset | None = None) -> scenarios.Scenario:
  ds = ds or datasets.load(cfg.dataset)
  if cfg.stream == "split":
    sc = scenarios.split(ds, cfg.n_tasks, cfg.kind, max_test=cfg.max_test)
  elif cfg.stream == "permuted":
    sc = scenarios.permuted(ds, cfg.n_tasks, cfg.kind, max_test=cfg.max_test)
  elif cfg.stream == "rotated":
    angles = np.linspace(0, 180, cfg.n_tasks, endpoint=False)
    sc = scenarios.rotated(ds, angles, cfg.kind, max_test=cfg.max_test)
  elif cfg.stream == "concept_shift":
    sc = scenarios.concept_shift(ds, cfg.n_tasks, max_test=cfg.max_test)
  else:
    raise ConfigError(f"RunConfig.stream: unknown stream {cfg.stream!r}")
  return jax.device_put(sc)


def make_trainer(cfg: RunConfig, sc: scenarios.Scenario) -> Trainer:
  model = Mlp(sc.in_dim, cfg.hidden, sc.head_size, sc.n_heads)
  opt = rules.optimizer(cfg.optimizer, cfg.lr)
  kwargs = dict(cfg.strategy_kwargs)
  if cfg.strategy == "gdumb":
    kwargs.setdefault("optimizer", opt)
  return Trainer(model, strategies_lib.make(cfg.strategy, strategies_lib.classifier(model), **kwargs), opt, cfg.eval_every)


def run(cfg: RunConfig, sc: scenarios.Scenario) -> Result:
  """Trains on every task in turn (all seeds at once); returns matrices and metrics."""
  trainer = make_trainer(cfg, sc)
  keys = jnp.stack([jax.random.key(s) for s in cfg.seeds])
  hp = {k: jnp.full((len(cfg.seeds),), v, jnp.float32) for k, v in cfg.hparams}
  state = trainer.init_lanes(keys, hp)
  rows, traj, ends = [], [], []
  for t in range(sc.n_tasks):
    sched = jnp.asarray(trainer.schedule(t, sc.n_tasks, cfg.steps_per_task, cfg.batch, seed=t))
    state, curve = trainer.train_lanes(state, sc, sched)
    state = trainer.end_task_lanes(state, sc, t)
    after = jax.vmap(trainer.evaluate, in_axes=(0, None))(state, sc)
    traj.append(np.asarray(curve.acc))
    ends.append(sum(len(x[0]) for x in traj))
    rows.append(np.asarray(after))
  matrix = np.stack(rows, axis=1)  # [L, T, T]
  trajectory = np.concatenate(traj, axis=1)  # [L, N, T]
  per_seed = [{"acc": metrics.average_accuracy(r), "forgetting": metrics.forgetting(r),
               "bwt": metrics.backward_transfer(r),
               "min_acc": metrics.min_accuracy(a, ends),
               "wc_acc": metrics.worst_case_accuracy(a, ends)}
              for r, a in zip(matrix, trajectory)]
  summary = {k: float(np.mean([p[k] for p in per_seed])) for k in per_seed[0]}
  summary.update({k + "_std": float(np.std([p[k] for p in per_seed])) for k in per_seed[0]})
  return Result(cfg, matrix, trajectory, np.asarray(ends), summary)


def full_data(cfg: RunConfig) -> RunConfig:
  """The same run on full MNIST through `tfds.data_source` (needs the data or network)."""
  return dataclasses.replace(cfg, dataset="tfds:mnist")


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
  """A GitHub markdown table; floats in [0, 1] print as percentages."""
  fmt = lambda v: f"{100 * v:.1f}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
  return "\n".join(lines)
