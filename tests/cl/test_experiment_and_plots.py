import dataclasses
import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from contlearn import provenance
from contlearn.cl import metrics, plots
from contlearn.cl.cells import run_cell, run_cells
from contlearn.cl.results import load_result
from contlearn.cl.run_config import RunConfig
from contlearn.errors import ConfigError
from contlearn.overrides import apply_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_run_reports_matrix_trajectory_and_metrics_consistently(tmp_path):
  cfg = RunConfig(
    dataset="digits",
    stream="split",
    kind="task",
    hidden=(32,),
    lr=1e-2,
    steps_per_task=40,
    batch=16,
    eval_every=20,
    seeds=(0, 1),
    strategy="er",
    strategy_options=("capacity=50",),
  )
  res = run_cell(cfg, tmp_path, progress=False)
  assert res.matrix.shape == (2, 5, 5) and res.trajectory.shape == (2, 10, 5)
  np.testing.assert_array_equal(res.ends, [2, 4, 6, 8, 10])
  # The evaluation at the end of each task's scan is the row of R (ER has no end_task).
  np.testing.assert_allclose(res.trajectory[:, res.ends - 1], res.matrix, atol=1e-6)
  want = np.mean([metrics.average_accuracy(r) for r in res.matrix])
  assert res.summary["acc"] == pytest.approx(want)
  assert res.summary["acc"] > 0.8  # task-IL on digits pairs is easy
  with pytest.raises(ConfigError, match="optimizer"):
    RunConfig(optimizer="rmsprop")
  with pytest.raises(ConfigError, match="multiple"):
    RunConfig(steps_per_task=150, eval_every=100).check()
  with pytest.raises(ConfigError, match="block_steps"):
    RunConfig(steps_per_task=200, eval_every=50, block_steps=75).check()
  with pytest.raises(ConfigError, match="multiple"):  # refused before anything runs
    run_cells({"a": cfg, "b": dataclasses.replace(cfg, eval_every=30)}, tmp_path / "two")
  assert not (tmp_path / "two" / "a").exists()
  with pytest.raises(ConfigError, match=r"RunConfig.strategy='ewcc': must be one of .*\(did you mean ewc\?\)"):
    RunConfig(strategy="ewcc")
  with pytest.raises(ConfigError, match="not name=value"):
    RunConfig(strategy_options=("capacity",))
  # summary.json holds the whole result.
  back = load_result(tmp_path / "summary.json")
  assert back.config == cfg and back.summary == res.summary
  np.testing.assert_array_equal(back.matrix, res.matrix)
  np.testing.assert_array_equal(back.trajectory, res.trajectory)
  assert json.loads((tmp_path / "summary.json").read_text())["code"] == provenance.code_version()


def test_plots_write_png_files(tmp_path):
  r = np.array([[0.9, 0.1], [0.5, 0.8]])
  a = plots.accuracy_heatmap(r, str(tmp_path / "m.png"), "R")
  b = plots.accuracy_curves(np.random.default_rng(0).random((20, 2)), np.arange(20), [10], str(tmp_path / "c.png"))
  for path in (a, b):
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _experiment(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "experiments", f"{name}.py"))
  mod = importlib.util.module_from_spec(spec)
  sys.modules[name] = mod  # dataclasses look their module up there
  spec.loader.exec_module(mod)
  return mod


@pytest.mark.parametrize("name", ["cl_three_scenarios", "cl_baselines", "cl_stability_gap", "cl_plasticity"])
def test_experiment_configs_build(name):
  mod = _experiment(name)
  cfg = mod.get_config()
  assert dataclasses.is_dataclass(cfg)
  assert f"contlearn run {name}" in mod.__doc__
  assert not hasattr(mod, "main") and callable(mod.run) and callable(mod.report)
  documented = mod.Config.__doc__.split("Attributes:")[1]
  for f in dataclasses.fields(cfg):
    assert f"{f.name}:" in documented, f.name


def test_baselines_gdumb_memory_fills_and_balances_over_the_rows_stream():
  """The GDumb row's memory is smaller than its stream, so it fills and class balancing evicts:
  after the stream (5 tasks of 2 classes, the row's steps and batch) every class holds capacity / 10."""
  import jax
  import jax.numpy as jnp
  import optax

  from contlearn import strategies
  from contlearn.cl import Batch, Mlp, classifier
  from contlearn.cl.run_config import parse_pairs

  cell = _experiment("cl_baselines").get_config().splitmnist_gdumb
  opts = parse_pairs(cell.strategy_options, "gdumb")
  assert opts["capacity"] < cell.n_tasks * cell.steps_per_task * cell.batch
  strat = strategies.make("gdumb", classifier(Mlp(1, (2,), 10)), optimizer=optax.sgd(0.1), **opts)
  mem = strat.init(None, None)
  offer = jax.jit(lambda m, b, k: strat.after_step(m, {}, None, None, None, b, None, k)[1])
  rng = np.random.default_rng(0)
  full_at = None
  for task in range(cell.n_tasks):
    for step in range(cell.steps_per_task):
      y = jnp.asarray(2 * task + rng.integers(0, 2, cell.batch), jnp.int32)
      zero = jnp.zeros(cell.batch, jnp.int32)
      mem = offer(mem, Batch(jnp.zeros((cell.batch, 1)), y, zero, zero + task), jax.random.key(step))
      full_at = full_at or (int(mem.size) == opts["capacity"] and task)
  assert full_at == 2  # full in task 3 (of 5)
  np.testing.assert_array_equal(np.asarray(mem.count), [opts["capacity"] // 10] * 10)
  np.testing.assert_array_equal(np.bincount(np.asarray(mem.unit), minlength=10), np.asarray(mem.count))


def test_baselines_train_as_many_steps_as_the_baselines():
  cfg = _experiment("cl_baselines").get_config()
  # 10 epochs of full MNIST's 60,000 rows at batch 256 (2,344 steps), rounded up to a multiple of eval_every.
  assert cfg.pmnist_ewc.steps_per_task == 2360 and cfg.pmnist_ewc.batch == 256
  assert cfg.pmnist_si.steps_per_task == 2360 and cfg.pmnist_si.batch == 256
  # 21 epochs of a split-MNIST task's 12,000 rows at batch 128 (1,969 steps), likewise rounded up.
  assert cfg.splitmnist_lwf.steps_per_task == 1995 and cfg.splitmnist_lwf.batch == 128
  assert all(getattr(cfg, n).seeds == (0, 1, 2) for n in cfg.models)


def test_baselines_dataset_and_standardize_reach_every_row():
  mod = _experiment("cl_baselines")
  cfg = mod.get_config()
  assert {c.standardize for c in mod._cells(cfg).values()} == {False}
  cells = mod._cells(dataclasses.replace(cfg, dataset="idx:/data/mnist", standardize=True))
  assert list(cells) == list(cfg.models)
  assert all(c.standardize and c.dataset == "idx:/data/mnist" for c in cells.values())
  assert {c.dataset for c in mod._cells(cfg).values()} == {"mnist_5k"}


def test_task_free_blurred_stream_trains_in_one_call(split_digits_task):
  import jax
  import optax

  from contlearn import engine, strategies
  from contlearn.cl import Mlp, classifier, classifier_learner, compile_calls, schedules

  sc = split_digits_task
  model = Mlp(64, (32,), 2, 5)
  strategy = strategies.make("er", classifier(model), capacity=100)
  cl = classifier_learner(model, strategy, optax.adam(1e-2))
  state = engine.init(cl, jax.random.key(0))
  calls = compile_calls(cl, model, strategy, state, eval_every=50)
  sched = schedules.blurred(5, 100, 16, blur=40, seed=0)
  state, (ce, acc) = calls.train(state, sched, sc)
  assert acc.shape == (10, 5) and ce.shape == (500,)
  acc = np.asarray(acc)
  assert acc[-1].min() > 0.8  # replay keeps every task of the stream
  assert acc[1, 0] > 0.8 and acc[1, 4] < 0.8  # task 4 not reached after 100 steps


def test_three_scenarios_cells_take_the_papers_strength_per_scenario():
  spec = importlib.util.spec_from_file_location(
    "cl_three_scenarios", os.path.join(ROOT, "experiments", "cl_three_scenarios.py")
  )
  mod = importlib.util.module_from_spec(spec)
  sys.modules["cl_three_scenarios"] = mod
  spec.loader.exec_module(mod)
  cells = mod.cells(mod.get_config())
  assert len(cells) == 7 * 3
  online = ((1e8, 0.8), (1e8, 0.7), (1e9, 0.8))  # online EWC's own lambda and gamma
  for kind, ewc, (lam, gamma), si in zip(mod.KINDS, (1e7, 1e6, 1e8), online, (50.0, 500.0, 0.5)):
    assert cells[f"ewc_{kind}"].hparams == (f"strength={ewc}",)
    assert cells[f"online_ewc_{kind}"].hparams == (f"strength={lam}", f"decay={gamma}")
    assert cells[f"si_{kind}"].hparams == (f"strength={si}",)
    assert cells[f"er_{kind}"].kind == kind and cells[f"er_{kind}"].hparams == ()
    assert cells[f"lwf_{kind}"].strategy_options == ("distill_over=so_far",)  # as the paper's code distils
  permuted = mod.cells(apply_overrides(mod.get_config(), ["bench=permuted", "models=online_ewc"]))
  assert [c.hparams for c in permuted.values()] == [
    ("strength=500.0", "decay=0.8"),
    ("strength=1000.0", "decay=0.9"),
    ("strength=5.0", "decay=1.0"),
  ]
  cfg = apply_overrides(mod.get_config(), ["bench=permuted", "models=si", "si.hparams=strength=3"])
  cells = mod.cells(cfg)
  assert list(cells) == ["si_task", "si_domain", "si_class"]
  assert {c.hparams for c in cells.values()} == {("strength=3",)}
  assert {c.stream for c in cells.values()} == {"permuted"}


@pytest.mark.slow  # a two-task run of the experiment: ~15 s of compiling
def test_plasticity_health_columns_cover_every_seed(tmp_path):
  """Dormant units and effective rank are computed per seed and reported as mean ± std over seeds."""
  mod = _experiment("cl_plasticity")
  base = mod.get_config()
  run = dataclasses.replace(base.run, n_tasks=2, steps_per_task=10, eval_every=10, max_test=40, seeds=(0, 1))
  result = mod.run(dataclasses.replace(base, run=run, models=("backprop",)), tmp_path, resume=False, progress=False)
  extra = json.loads((tmp_path / "results.json").read_text())[0]["extra"]
  dormant, rank = extra["dormant_fraction"], extra["effective_rank_last_layer"]
  assert len(dormant) == len(rank) == 2 and rank[0] != rank[1]
  row = result["table"].splitlines()[2]
  assert f"{100 * np.mean(dormant):.1f} ± {100 * np.std(dormant):.1f}" in row
  assert f"{np.mean(rank):.1f} ± {np.std(rank):.1f}" in row
  assert mod.over_seeds([0.25]) == 0.25
  tenths = result["table"].split("New-task accuracy, mean over each tenth of the run:")[1].strip().splitlines()
  assert tenths[0] == "| Method | task 1 | task 2 |"
  acc = np.asarray(result["new_task_acc"]["backprop"])  # the mean over seeds, as plotted
  cells = [c.split(" ± ")[0] for c in tenths[2].strip("| ").split(" | ")[1:]]
  assert cells == [f"{100 * a:.1f}" for a in acc]


def test_er_filled_at_task_end_replays_finished_tasks_only(split_digits_task):
  import jax
  import jax.numpy as jnp
  import optax

  from contlearn import engine, strategies
  from contlearn.cl import Mlp, classifier, classifier_learner
  from contlearn.strategies.base import keep_state

  sc = split_digits_task
  model = Mlp(64, (16,), 2, 5)
  strategy = strategies.make("er", classifier(model), capacity=40, replay_batch=8, fill="task_end")
  assert strategy.after_step is keep_state  # nothing is offered while a task is learnt
  state = engine.init(classifier_learner(model, strategy, optax.sgd(0.1)), jax.random.key(0))
  assert int(state.strategy.size) == 0
  for task in range(3):
    state = strategy.end_task(state, sc, jnp.asarray(task, jnp.int32), jax.random.key(task))
    mem = state.strategy
    share = 40 // (task + 1)
    assert int(mem.size) == share * (task + 1)
    tasks = np.asarray(mem.rows.task[: int(mem.size)])
    np.testing.assert_array_equal(tasks, np.repeat(np.arange(task + 1), share))  # each finished task a share
  with pytest.raises(ConfigError, match="fill='ring' must be one of reservoir, task_end"):
    strategies.make("er", classifier(model), fill="ring")


def test_stability_gap_runs_the_papers_memory_and_steps():
  cfg = _experiment("cl_stability_gap").get_config()
  assert "fill=task_end" in cfg.er.strategy_options and "fill=reservoir" in cfg.er_reservoir.strategy_options
  assert cfg.run.steps_per_task == 470 and cfg.run.batch == 256 and cfg.run.eval_every == 1
  assert cfg.models == ("er", "naive") and len(cfg.run.seeds) == 5
