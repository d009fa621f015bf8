"""The configuration of a classic continual-learning cell, and the methods an experiment compares.

A *cell* is one `RunConfig`: data, scenario, model, optimizer, strategy,
schedule and seeds (every seed a lane of one vmapped program). An experiment
is a table of cells; its rows are often `Method`s (a strategy with its
settings) applied to one shared `RunConfig`, chosen by the experiment's
`models` field (`selected`, `method_cells`). `contlearn.cl.cells` runs cells,
`contlearn.cl.results` holds what they produce.

>>> base = RunConfig(dataset="digits", kind="task", steps_per_task=20, eval_every=10)
>>> Method("EWC", "ewc", hparams=("strength=100",)).cell(base).strategy
'ewc'
>>> parse_pairs(("capacity=2000", "lr=1e-3", "online=true"), "example")
{'capacity': 2000, 'lr': 0.001, 'online': True}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import jax

from contlearn import rules
from contlearn import strategies as strategies_lib
from contlearn.errors import ConfigError
from contlearn.field_checks import require

STREAMS = ("split", "permuted", "rotated", "concept_shift")


def parse_pairs(pairs: Sequence[str], where: str) -> dict[str, Any]:
  """`("capacity=2000", "lr=1e-3", "online=true")` -> {"capacity": 2000, "lr": 0.001, "online": True}.

  Values are ints, floats, booleans (true/false) or else strings.
  """
  out = {}
  for pair in pairs:
    name, sep, text = pair.partition("=")
    name, text = name.strip(), text.strip()
    if not sep or not name or not text:
      raise ConfigError(f"{where}: {pair!r} is not name=value")
    value: Any = text
    for parse in (int, float):
      try:
        value = parse(text)
        break
      except ValueError:
        pass
    if text.lower() in ("true", "false"):
      value = text.lower() == "true"
    out[name] = value
  return out


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One cell: data, scenario, model, optimizer, strategy, schedule and seeds.

  Attributes:
    dataset: a `datasets.load` name ("mnist_5k", "digits", "mnist1d",
      "idx:<folder>" for a folder of IDX files such as full MNIST or
      Fashion-MNIST, "tfds:mnist", ...).
    stream: "split", "permuted", "rotated" or "concept_shift".
    kind: "task", "domain" or "class" (-incremental).
    n_tasks: number of tasks.
    hidden: hidden layer widths of the MLP.
    optimizer: "sgd" or "adam".
    lr: learning rate.
    steps_per_task: training steps per task (a multiple of eval_every).
    batch: batch size; across processes a multiple of their number (each
      process feeds an equal share of every batch).
    eval_every: steps between evaluations on every task's test rows.
    max_test: test rows per task used for evaluation.
    max_train: use only the dataset's first `max_train` training rows (0:
      all), e.g. to fit many permuted tasks of a large dataset in memory.
    standardize: shift and scale the inputs to mean 0 and standard
      deviation 1 over the training rows used (`datasets.standardized`, as
      Avalanche's MNIST benchmarks do); false keeps them in [0, 1]. A
      rotated stream's corners outside the image are 0, the mean, then.
    strategy: a `strategies.make` name.
    strategy_options: the strategy factory's arguments as "name=value",
      e.g. ("capacity=2000", "replay_batch=128").
    hparams: the strategy's traced hyperparameters as "name=value", e.g.
      ("strength=1000",).
    seeds: seeds, run side by side as the lanes of one program.
    block_steps: steps per compiled block (a multiple of eval_every that
      divides steps_per_task); 0: a whole task per block.
    checkpoint_every: blocks between checkpoints (there is one at every
      task end too).
    keep: checkpoints kept.
    on_nonfinite: a block with a non-finite loss, accuracy or state: "stop"
      the run (exit status 3) or "skip" it (rolled back; see
      docs/reliability.md).
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
  max_train: int = 0
  standardize: bool = False
  strategy: str = "naive"
  strategy_options: tuple[str, ...] = ()
  hparams: tuple[str, ...] = ()
  seeds: tuple[int, ...] = (0,)
  block_steps: int = 0
  checkpoint_every: int = 10
  keep: int = 2
  on_nonfinite: str = "stop"

  def __post_init__(self):
    require(
      self,
      positive=("n_tasks", "hidden", "steps_per_task", "batch", "eval_every", "max_test", "checkpoint_every", "keep"),
      non_negative=("lr", "block_steps", "max_train"),
      choices={
        "optimizer": tuple(rules.optimizer_names()),
        "stream": tuple(STREAMS),
        "kind": ("task", "domain", "class"),
        "on_nonfinite": ("stop", "skip"),
        "strategy": tuple(sorted(strategies_lib.REGISTRY)),
      },
    )
    if not self.seeds:
      raise ConfigError("RunConfig.seeds: needs at least one seed")
    parse_pairs(self.strategy_options, "RunConfig.strategy_options")
    hp = parse_pairs(self.hparams, "RunConfig.hparams")
    if any(isinstance(v, (bool, str)) for v in hp.values()):
      raise ConfigError(f"RunConfig.hparams: values must be numbers, got {self.hparams}")

  def check(self) -> None:
    """Raises ConfigError when fields disagree, or the batch does not split over
    the processes (checked before a run, not while `--set` changes them one at a time)."""
    processes = jax.process_count()
    if self.batch % processes:
      raise ConfigError(
        f"RunConfig: batch={self.batch} does not split over {processes} processes "
        f"(each feeds an equal share of every batch); choose a multiple of {processes}"
      )
    if self.eval_every < 1 or self.steps_per_task % self.eval_every:
      raise ConfigError(
        f"RunConfig: steps_per_task={self.steps_per_task} is not a multiple of eval_every={self.eval_every}"
      )
    if self.block_steps and (self.block_steps % self.eval_every or self.steps_per_task % self.block_steps):
      raise ConfigError(
        f"RunConfig: block_steps={self.block_steps} must be a multiple of "
        f"eval_every={self.eval_every} and divide steps_per_task={self.steps_per_task}"
      )

  @property
  def steps_per_block(self) -> int:
    return self.block_steps or self.steps_per_task


@dataclasses.dataclass(frozen=True)
class Method:
  """A row of an experiment: a strategy with its settings.

  Attributes:
    label: the row's name in tables.
    strategy: a `strategies.make` name.
    strategy_options: the strategy factory's arguments as "name=value".
    hparams: the strategy's traced hyperparameters as "name=value".
  """

  label: str
  strategy: str = "naive"
  strategy_options: tuple[str, ...] = ()
  hparams: tuple[str, ...] = ()

  def cell(self, run: RunConfig) -> RunConfig:
    """`run` learnt with this method."""
    return dataclasses.replace(
      run, strategy=self.strategy, strategy_options=self.strategy_options, hparams=self.hparams
    )


def selected(cfg: Any, kind: type = Method) -> dict[str, Any]:
  """The fields of `cfg` named in `cfg.models`, in that order; each must be a `kind`."""
  choices = [f.name for f in dataclasses.fields(cfg) if isinstance(getattr(cfg, f.name), kind)]
  unknown = [m for m in cfg.models if m not in choices]
  if unknown or not cfg.models:
    raise ConfigError(f"models={','.join(cfg.models)}: choose from {', '.join(choices)}")
  return {m: getattr(cfg, m) for m in cfg.models}


def method_cells(cfg: Any, base: RunConfig) -> dict[str, RunConfig]:
  """`base` learnt with each method `cfg.models` selects (see `selected`), by name."""
  return {name: method.cell(base) for name, method in selected(cfg).items()}


def config_json(cfg: RunConfig) -> dict[str, Any]:
  """`cfg` as JSON values (tuples as lists), as `summary.json` and checkpoints hold it."""
  return json.loads(json.dumps(dataclasses.asdict(cfg)))
