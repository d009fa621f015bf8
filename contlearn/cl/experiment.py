"""Continual-learning runs on the engine and the host loop, one folder per cell.

A *cell* is one `RunConfig` (a method on a scenario, every seed as a lane of
one vmapped program). `run_cell` learns it through `contlearn.loop.run`:

    feed   TaskFeed: each task's schedule in blocks of `block_steps` steps
    env    the Scenario (every task's padded train and test rows)
    block  engine.compile(classifier_learner, lanes=True, probe=accuracy,
           every=eval_every): one compiled call per block
    hooks  ScenarioTaskEnd (end_task, row t of R), EvalLog (metrics.jsonl,
           TensorBoard, progress), Checkpoint (every `checkpoint_every`
           blocks and at every task end)

and writes `summary.json` (matrix, trajectory, metrics). `run_cells` runs
named cells into subfolders: on resume, a finished cell is read back from its
`summary.json`, an interrupted one continues from its checkpoint.

>>> import tempfile
>>> cfg = RunConfig(dataset="digits", kind="task", strategy="ewc", hparams=("strength=100",),
...                 hidden=(32,), steps_per_task=20, eval_every=10, batch=32, seeds=(0, 1, 2))
>>> result = run_cell(cfg, pathlib.Path(tempfile.mkdtemp()), progress=False)
>>> result.matrix.shape                               # [seeds, after task, on task]
(3, 5, 5)
>>> 0.5 < result.summary["acc"] <= 1.0                # mean over seeds (std: "acc_std")
True
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import engine, loop, rules
from contlearn.cl import datasets, metrics, scenarios
from contlearn.cl import strategies as strategies_lib
from contlearn.cl.feed import TaskFeed
from contlearn.cl.hooks import EvalLog, ScenarioTaskEnd
from contlearn.cl.learner import accuracy_probe, classifier_learner, compile_calls, schedule
from contlearn.cl.model import Mlp
from contlearn.errors import CheckpointError, ConfigError

STREAMS = ("split", "permuted", "rotated", "concept_shift")
# Settings that may change between a run and its resumption.
_RESUMABLE_CHANGES = ("checkpoint_every", "keep")


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
      "tfds:mnist" for full MNIST, ...).
    stream: "split", "permuted", "rotated" or "concept_shift".
    kind: "task", "domain" or "class" (-incremental).
    n_tasks: number of tasks.
    hidden: hidden layer widths of the MLP.
    optimizer: "sgd" or "adam".
    lr: learning rate.
    steps_per_task: training steps per task (a multiple of eval_every).
    batch: batch size.
    eval_every: steps between evaluations on every task's test rows.
    max_test: test rows per task used for evaluation.
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
  strategy_options: tuple[str, ...] = ()
  hparams: tuple[str, ...] = ()
  seeds: tuple[int, ...] = (0,)
  block_steps: int = 0
  checkpoint_every: int = 10
  keep: int = 2

  def __post_init__(self):
    if self.optimizer not in rules.optimizer_names():
      raise ConfigError(f"RunConfig.optimizer must be one of {rules.optimizer_names()}, got {self.optimizer!r}")
    if self.stream not in STREAMS:
      raise ConfigError(f"RunConfig.stream must be one of {STREAMS}, got {self.stream!r}")
    if self.strategy not in strategies_lib.REGISTRY:
      raise ConfigError(
        f"RunConfig.strategy: unknown strategy {self.strategy!r}; choose one of {sorted(strategies_lib.REGISTRY)}"
      )
    if not self.seeds:
      raise ConfigError("RunConfig.seeds: needs at least one seed")
    if self.checkpoint_every < 1:
      raise ConfigError(f"RunConfig.checkpoint_every must be >= 1, got {self.checkpoint_every}")
    parse_pairs(self.strategy_options, "RunConfig.strategy_options")
    hp = parse_pairs(self.hparams, "RunConfig.hparams")
    if any(isinstance(v, (bool, str)) for v in hp.values()):
      raise ConfigError(f"RunConfig.hparams: values must be numbers, got {self.hparams}")

  def check(self) -> None:
    """Raises ConfigError when fields disagree (checked before a run, not while
    `--set` changes them one at a time)."""
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


@dataclasses.dataclass
class Result:
  """A finished cell.

  Attributes:
    config: its configuration.
    matrix: float32 [L, T, T], R of each lane (seed).
    trajectory: float32 [L, N, T], accuracy on every task at each evaluation.
    ends: int [T], per task the evaluations up to its end.
    summary: ACC, forgetting, BWT, avg-min-ACC, WC-ACC: mean over lanes
      and `<name>_std`, their spread.
    extra: what the experiment computed from the final state (`run_cell`'s
      `extra`), JSON.
    timing: seconds, first-block seconds, examples per second per lane.
  """

  config: RunConfig
  matrix: np.ndarray
  trajectory: np.ndarray
  ends: np.ndarray
  summary: dict[str, float]
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)
  timing: dict[str, float] = dataclasses.field(default_factory=dict)


def build_scenario(cfg: RunConfig, ds: datasets.Dataset | None = None) -> scenarios.Scenario:
  """The scenario of `cfg` on the device."""
  ds = ds or datasets.load(cfg.dataset)
  if cfg.stream == "split":
    sc = scenarios.split(ds, cfg.n_tasks, cfg.kind, max_test=cfg.max_test)
  elif cfg.stream == "permuted":
    sc = scenarios.permuted(ds, cfg.n_tasks, cfg.kind, max_test=cfg.max_test)
  elif cfg.stream == "rotated":
    angles = np.linspace(0, 180, cfg.n_tasks, endpoint=False)
    sc = scenarios.rotated(ds, angles, cfg.kind, max_test=cfg.max_test)
  else:
    sc = scenarios.concept_shift(ds, cfg.n_tasks, max_test=cfg.max_test)
  return jax.device_put(sc)


def build_method(cfg: RunConfig, sc: scenarios.Scenario) -> tuple[Mlp, strategies_lib.Strategy, Any]:
  """The model, strategy and optax optimizer of `cfg` for the scenario `sc`."""
  model = Mlp(sc.in_dim, cfg.hidden, sc.head_size, sc.n_heads)
  opt = rules.optimizer(cfg.optimizer, cfg.lr)
  kwargs = parse_pairs(cfg.strategy_options, "RunConfig.strategy_options")
  if cfg.strategy == "gdumb":
    kwargs.setdefault("optimizer", opt)
  return model, strategies_lib.make(cfg.strategy, strategies_lib.classifier(model), **kwargs), opt


def summarize(matrix: np.ndarray, trajectory: np.ndarray, ends: Sequence[int]) -> dict[str, float]:
  """Per-lane metrics, then their mean and spread (`_std`) over lanes."""
  per_lane = [
    {
      "acc": metrics.average_accuracy(r),
      "forgetting": metrics.forgetting(r),
      "bwt": metrics.backward_transfer(r),
      "min_acc": metrics.min_accuracy(a, ends),
      "wc_acc": metrics.worst_case_accuracy(a, ends),
    }
    for r, a in zip(matrix, trajectory)
  ]
  summary = {k: float(np.mean([p[k] for p in per_lane])) for k in per_lane[0]}
  summary.update({k + "_std": float(np.std([p[k] for p in per_lane])) for k in per_lane[0]})
  return summary


def _jsonable(cfg: RunConfig) -> dict[str, Any]:
  return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _check_same_run(saved: dict[str, Any], cfg: RunConfig, where: pathlib.Path) -> None:
  now = _jsonable(cfg)
  changed = [k for k in now if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k]]
  if changed:
    detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
    raise CheckpointError(f"cannot resume {where}: the configuration changed ({detail})")


def load_result(path: pathlib.Path) -> Result:
  """A cell's `Result` from its `summary.json`."""
  d = json.loads(pathlib.Path(path).read_text())
  cfg = RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["config"].items()})
  return Result(
    cfg,
    np.asarray(d["matrix"], np.float32),
    np.asarray(d["trajectory"], np.float32),
    np.asarray(d["ends"]),
    d["summary"],
    d.get("extra", {}),
    d.get("timing", {}),
  )


def _write_result(path: pathlib.Path, name: str, res: Result) -> None:
  path.write_text(
    json.dumps(
      {
        "name": name,
        "summary": res.summary,
        "extra": res.extra,
        "timing": res.timing,
        "ends": res.ends.tolist(),
        "matrix": res.matrix.tolist(),
        "trajectory": res.trajectory.tolist(),
        "config": _jsonable(res.config),
      },
      indent=1,
    )
  )


Extra = Callable[[Any, scenarios.Scenario, Mlp], dict[str, Any]]


def run_cell(
  cfg: RunConfig,
  out: str | pathlib.Path,
  *,
  resume: bool = False,
  progress: bool = True,
  name: str = "",
  scenario: scenarios.Scenario | None = None,
  extra: Extra | None = None,
  hooks: Sequence[loop.Hook] = (),
) -> Result:
  """Learns every task of one cell in turn (all seeds at once); see the module docstring.

  Args:
    cfg: the cell.
    out: its folder (summary.json, metrics.jsonl, tensorboard/, checkpoints/).
    resume: continue from the latest checkpoint in `out` (a finished cell is
      read back from its summary.json).
    progress: show a progress bar.
    name: label for the progress bar and summary.json.
    scenario: the scenario of `cfg`, if already built.
    extra: `extra(final_state, scenario, model) -> dict` (JSON), kept in the
      result (e.g. dormant units of the final network).
    hooks: more hooks, after the cell's own.

  Raises:
    CheckpointError: `out` holds checkpoints and `resume` is False; or the
      configuration changed since the checkpoint.
    KeyboardInterrupt: `loop.STOP` was set; the state was checkpointed.
  """
  cfg.check()
  out = pathlib.Path(out)
  name = name or out.name
  summary_path = out / "summary.json"
  if resume and summary_path.exists():
    done = load_result(summary_path)
    _check_same_run(_jsonable(done.config), cfg, out)
    return done
  if not resume and (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
    raise CheckpointError(
      f"{out / 'checkpoints'} already holds checkpoints; pass --resume to continue that run, or choose another --out"
    )
  sc = scenario if scenario is not None else build_scenario(cfg)
  model, strategy, opt = build_method(cfg, sc)
  learner = classifier_learner(model, strategy, opt)
  keys = jnp.stack([jax.random.key(s) for s in cfg.seeds])
  hparams = {
    k: jnp.full((len(cfg.seeds),), v, jnp.float32) for k, v in parse_pairs(cfg.hparams, "RunConfig.hparams").items()
  }
  feed = TaskFeed(
    lambda t: schedule(strategy, t, sc.n_tasks, cfg.steps_per_task, cfg.batch, seed=t),
    sc.n_tasks,
    cfg.steps_per_task,
    cfg.steps_per_block,
  )
  state = engine.init(learner, keys, lanes=True, hparams=hparams)
  calls = compile_calls(learner, model, strategy, state, eval_every=cfg.eval_every, lanes=True)
  task_end = ScenarioTaskEnd(strategy, calls.evaluate, feed, cfg.eval_every, lanes=True)
  log = EvalLog(out, feed, cfg.eval_every, cfg.batch, progress, name)
  run = loop.fit(
    learner,
    lambda: state,
    feed,
    out,
    config=_jsonable(cfg),
    hooks=[task_end, log, *hooks],
    env=sc,
    lanes=True,
    size=lambda xs: int(xs.size),
    resume=resume,
    checkpoint_every=cfg.checkpoint_every,
    keep=cfg.keep,
    also=lambda run: run.position["block"] == 0,
    same_run=lambda saved: _check_same_run(saved, cfg, out),
    probe=accuracy_probe(model),
    every=cfg.eval_every,
  )

  matrix = np.stack(task_end.rows, axis=1)  # [L, T, T]
  trajectory = np.stack(log.trajectory, axis=1)  # [L, N, T]
  ends = np.asarray(task_end.ends)
  res = Result(
    cfg,
    matrix,
    trajectory,
    ends,
    summarize(matrix, trajectory, ends),
    extra(run.state, sc, model) if extra else {},
    {
      "seconds": time.perf_counter() - log.started,
      "first_block_s": log.first_block_s or 0.0,
      "examples_per_s": log.examples_per_s(),
    },
  )
  _write_result(summary_path, name, res)
  return res


def run_cells(
  cells: dict[str, RunConfig],
  out: str | pathlib.Path,
  *,
  resume: bool = False,
  progress: bool = True,
  table: Callable[[dict[str, Result]], str] | None = None,
  extra: Extra | None = None,
  hooks: Sequence[loop.Hook] = (),
) -> dict[str, Result]:
  """Runs each named cell into `out/<name>`; returns their results by name.

  After each cell, `out/results.json` (every finished cell's summary, extra
  and configuration) and, with `table`, `out/results.md` are rewritten, so
  the experiment's table grows as cells finish. Cells that share data
  settings share one scenario; `extra` and `hooks` serve every cell (see
  `run_cell`).
  """
  for cfg in cells.values():  # every cell is checked before the first one runs
    cfg.check()
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  shared: dict[tuple, scenarios.Scenario] = {}
  results: dict[str, Result] = {}
  for name, cfg in cells.items():
    data = (cfg.dataset, cfg.stream, cfg.kind, cfg.n_tasks, cfg.max_test)
    if data not in shared and not (resume and (out / name / "summary.json").exists()):
      shared[data] = build_scenario(cfg)
    results[name] = run_cell(
      cfg, out / name, resume=resume, progress=progress, name=name, scenario=shared.get(data), extra=extra, hooks=hooks
    )
    records = [
      {"name": n, **r.summary, "extra": r.extra, "timing": r.timing, "config": _jsonable(r.config)}
      for n, r in results.items()
    ]
    (out / "results.json").write_text(json.dumps(records, indent=1))
    if table is not None:
      (out / "results.md").write_text(table(results) + "\n")
  return results


def method_cells(cfg: Any, base: RunConfig) -> dict[str, RunConfig]:
  """`base` learnt with each method `cfg.models` selects (see `selected`), by name."""
  return {name: method.cell(base) for name, method in selected(cfg).items()}


def table_experiment(
  cells: Callable[[Any], dict[str, RunConfig]],
  table: Callable[[Any, dict[str, Result]], str],
  *,
  extra: Callable[[Any], Extra] | None = None,
  after: Callable[[Any, dict[str, Result], pathlib.Path], dict[str, Any] | None] | None = None,
) -> Callable[..., dict[str, Any]]:
  """The `run(cfg, out, *, resume, progress)` of an experiment that is a table of cells.

  `run` learns `cells(cfg)` with `run_cells` (`out/results.md`, the table
  `table(cfg, results)`, grows as cells finish), then calls `after(cfg,
  results, out)` (plots; what it returns joins the result), and returns
  `{"table": ..., "summaries": {cell: summary}, **after's}`.

  Args:
    cells: `cfg -> {name: RunConfig}`, in table order.
    table: `(cfg, results) -> str`, a markdown table.
    extra: `cfg -> extra` for `run_cells` (what each cell computes from its final state).
    after: `(cfg, results, out) -> dict or None`, run once every cell is done.
  """

  def run(cfg: Any, out: str | pathlib.Path, *, resume: bool, progress: bool) -> dict[str, Any]:
    out = pathlib.Path(out)
    results = run_cells(
      cells(cfg),
      out,
      resume=resume,
      progress=progress,
      table=lambda r: table(cfg, r),
      extra=extra(cfg) if extra else None,
    )
    more = (after(cfg, results, out) if after else None) or {}
    return {"table": table(cfg, results), "summaries": {n: r.summary for n, r in results.items()}, **more}

  return run


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
  """A GitHub markdown table; floats in [0, 1] print as percentages."""
  fmt = lambda v: f"{100 * v:.1f}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
  return "\n".join(lines)
