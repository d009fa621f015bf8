"""Running classic continual-learning cells on the engine and the host loop, one folder per cell.

A *cell* is one `RunConfig` (`contlearn.cl.run_config`: a method on a
scenario, every seed as a lane of one vmapped program). `run_cell` learns it
through `contlearn.run_folder.fit`:

    feed   TaskFeed: each task's schedule in blocks of `block_steps` steps, this
           process's rows of every batch (the global block: `engine.place_local_xs`)
    env    the Scenario (every task's padded train and test rows)
    block  engine.compile(classifier_learner, lanes=True, probe=accuracy,
           every=eval_every): one compiled call per block
    hooks  ScenarioTaskEnd (end_task, row t of R), EvalLog (metrics.jsonl,
           TensorBoard, progress), Checkpoint (every `checkpoint_every`
           blocks and at every task end)

and writes `summary.json` (a `contlearn.cl.results.Result`: matrix,
trajectory, metrics). `run_cells` runs named cells into subfolders: on
resume, a finished cell is read back from its `summary.json`, an interrupted
one continues from its checkpoint. `table_experiment` is the `run` of an
experiment that is a table of cells.

>>> import tempfile
>>> from contlearn.cl.run_config import RunConfig
>>> cfg = RunConfig(dataset="digits", kind="task", strategy="ewc", hparams=("strength=100",),
...                 hidden=(32,), steps_per_task=20, eval_every=10, batch=32, seeds=(0, 1, 2))
>>> result = run_cell(cfg, pathlib.Path(tempfile.mkdtemp()), progress=False)
>>> result.matrix.shape                               # [seeds, after task, on task]
(3, 5, 5)
>>> 0.5 < result.summary["acc"] <= 1.0                # mean over seeds (std: "acc_std")
True
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import engine, loop, rules, run_folder, sharding
from contlearn import strategies as strategies_lib
from contlearn.checkpoint import Checkpoints
from contlearn.cl import datasets, scenarios
from contlearn.cl.feed import TaskFeed, finished_task
from contlearn.cl.hooks import EvalLog, ScenarioTaskEnd, Settle
from contlearn.cl.learner import accuracy_probe, classifier_learner, compile_calls, schedule
from contlearn.cl.model import Mlp
from contlearn.cl.results import Result, load_result, summarize, write_result
from contlearn.cl.run_config import RunConfig, config_json, parse_pairs
from contlearn.cl.task_model import classifier
from contlearn.errors import CheckpointError
from contlearn.run_log import write_atomic

# Settings that may change between a run and its resumption.
RESUMABLE_CHANGES = ("checkpoint_every", "keep", "on_nonfinite")
# Settings added after runs were saved, with the value that behaves as before them.
ADDED_SETTINGS = {"max_train": 0, "standardize": False}


# The settings `build_scenario` reads: cells equal in these share one scenario.
SCENARIO_SETTINGS = ("dataset", "stream", "kind", "n_tasks", "max_test", "max_train", "standardize")


def build_scenario(cfg: RunConfig, ds: datasets.Dataset | None = None) -> scenarios.Scenario:
  """The scenario of `cfg` on the device (from its `SCENARIO_SETTINGS`)."""
  ds = ds or datasets.load(cfg.dataset)
  if cfg.max_train:
    ds = datasets.first_train_rows(ds, cfg.max_train)
  if cfg.standardize:
    ds = datasets.standardized(ds)
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
  return model, strategies_lib.make(cfg.strategy, classifier(model), **kwargs), opt


def seed_lanes(cfg: RunConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The lanes of `cfg`: one key per seed (`engine.seed_keys`, uint32 [L, 2]) and its hyperparameters
  (`cfg.hparams`, each a float32 [L] of one value)."""
  hparams = {
    k: jnp.full((len(cfg.seeds),), v, jnp.float32) for k, v in parse_pairs(cfg.hparams, "RunConfig.hparams").items()
  }
  return engine.seed_keys(cfg.seeds), hparams


def check_same_run(saved: dict[str, Any], cfg: RunConfig, where: pathlib.Path) -> None:
  """Raises CheckpointError when `cfg` differs from the saved configuration of the
  run in `where` in more than `RESUMABLE_CHANGES`."""
  run_folder.check_same_config(saved, config_json(cfg), where, RESUMABLE_CHANGES, ADDED_SETTINGS)


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
    check_same_run(config_json(done.config), cfg, out)
    return done
  if not resume and (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
    raise CheckpointError(
      f"{out / 'checkpoints'} already holds checkpoints; pass --resume to continue that run, or choose another --out"
    )
  sc = scenario if scenario is not None else build_scenario(cfg)
  model, strategy, opt = build_method(cfg, sc)
  learner = classifier_learner(model, strategy, opt)
  keys, hparams = seed_lanes(cfg)
  mesh = sharding.process_mesh()
  feed = TaskFeed(
    lambda t: schedule(strategy, t, sc.n_tasks, cfg.steps_per_task, cfg.batch, seed=t),
    sc.n_tasks,
    cfg.steps_per_task,
    cfg.steps_per_block,
    rows=sharding.local_lanes(cfg.batch, mesh),
  )
  if jax.process_count() > 1:
    say_share(feed, cfg.batch)
  state = engine.init(learner, keys, mesh=mesh, lanes=True, hparams=hparams)
  calls = compile_calls(learner, model, strategy, state, eval_every=cfg.eval_every, lanes=True)
  task_end = ScenarioTaskEnd(strategy, calls.evaluate, feed, cfg.eval_every, lanes=True)
  log = EvalLog(out, feed, cfg.eval_every, cfg.batch, progress, name)
  run = run_folder.fit(
    learner,
    lambda: state,
    feed,
    out,
    config=config_json(cfg),
    hooks=[*([Settle()] if jax.process_count() > 1 else []), task_end, log, *hooks],
    env=sc,
    lanes=True,
    mesh=mesh,
    shares=True,
    size=lambda xs: int(xs.size),
    resume=resume,
    checkpoint_every=cfg.checkpoint_every,
    keep=cfg.keep,
    on_nonfinite=cfg.on_nonfinite,
    also=lambda run: run.position["block"] == 0,
    same_run=lambda saved: check_same_run(saved, cfg, out),
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
      "seconds": run.seconds,
      "first_block_s": log.first_block_s or 0.0,
      "examples_per_s": log.examples_per_s(),
    },
  )
  write_result(summary_path, name, res)
  return res


def final_state(out: str | pathlib.Path) -> tuple[Result, Any]:
  """A finished cell's result and its learner state after the last task, read from its folder `out`.

  The result is `out/summary.json`; the state is the newest checkpoint in
  `out/checkpoints` (saved at the end of the last task, after its
  `end_task`), verified against its fingerprint, every leaf with the seeds
  as its leading lane axis (e.g. `state.params`, `state.strategy`). The
  cell's scenario is rebuilt for the state's shapes, so its data must be
  where the cell read it.

  Raises:
    CheckpointError: the cell has not finished (no summary.json), it has
      no checkpoints, or its newest checkpoint is not the end of the last
      task or cannot be read.
  """
  out = pathlib.Path(out)
  summary = out / "summary.json"
  if not summary.exists():
    raise CheckpointError(f"{summary} does not exist: the cell has not finished (resume it to its end first)")
  if not (out / "checkpoints").is_dir():
    raise CheckpointError(f"{out / 'checkpoints'} does not exist: the cell's state was not kept")
  res = load_result(summary)
  cfg = res.config
  model, strategy, opt = build_method(cfg, build_scenario(cfg))
  keys, hparams = seed_lanes(cfg)
  learner = classifier_learner(model, strategy, opt)
  abstract = jax.eval_shape(lambda: engine.init(learner, keys, lanes=True, hparams=hparams))
  checkpoints = Checkpoints(out / "checkpoints")
  try:
    state, meta, chunk = checkpoints.restore(abstract)
  finally:
    checkpoints.close()
  if finished_task(meta["position"]) != cfg.n_tasks - 1:
    raise CheckpointError(
      f"checkpoint {out / 'checkpoints' / str(chunk)} is at {meta['position']}, not the end of task {cfg.n_tasks}"
    )
  return res, state


def say_share(feed: TaskFeed, batch: int) -> None:
  """One line on stderr: the rows of every batch this process feeds, and the shape of its blocks."""
  xs, _ = feed.next(feed.start())
  print(
    f"contlearn: process {jax.process_index()} of {jax.process_count()} feeds rows "
    f"{feed.rows.start}-{feed.rows.stop - 1} of every batch of {batch} (blocks {xs.dtype} {list(xs.shape)})",
    file=sys.stderr,
  )


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
    data = tuple(getattr(cfg, f) for f in SCENARIO_SETTINGS)
    if data not in shared and not (resume and (out / name / "summary.json").exists()):
      shared[data] = build_scenario(cfg)
    results[name] = run_cell(
      cfg, out / name, resume=resume, progress=progress, name=name, scenario=shared.get(data), extra=extra, hooks=hooks
    )
    records = [
      {"name": n, **r.summary, "extra": r.extra, "timing": r.timing, "config": config_json(r.config)}
      for n, r in results.items()
    ]
    write_atomic(out / "results.json", json.dumps(records, indent=1))
    if table is not None:
      write_atomic(out / "results.md", table(results) + "\n")
  return results


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
