"""A CL run on the host loop: its log, one compile for all tasks, checkpoints and resume."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from compiles import Programs
from example_scripts import load_example

from contlearn import loop
from contlearn.cl import schedules
from contlearn.cl.cells import final_state, run_cell, run_cells
from contlearn.cl.feed import TaskFeed
from contlearn.cl.results import Result, load_result
from contlearn.cl.run_config import RunConfig
from contlearn.errors import CheckpointError, ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]

# 3 permuted-digits tasks x 4 blocks of 10 steps; EWC so that end_task does work.
TINY = RunConfig(
  dataset="digits",
  stream="permuted",
  kind="domain",
  n_tasks=3,
  hidden=(16,),
  optimizer="sgd",
  lr=0.05,
  steps_per_task=40,
  batch=8,
  eval_every=5,
  block_steps=10,
  max_test=50,
  strategy="ewc",
  strategy_options=("n_fisher=32", "chunk=16"),
  hparams=("strength=10",),
  seeds=(0, 1),
  checkpoint_every=2,
)


class CompilesPerTask(loop.Hook):
  """Counts the programs built (compiled or read from the cache), split at each task end (after its end_task)."""

  def __init__(self):
    self.programs, self.per_task = Programs(), []

  def after_block(self, run):
    if run.position["block"] == 0:
      self.per_task.append(self.programs.count - sum(self.per_task))

  def close(self):
    self.programs.close()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """TINY learnt without interruption: (its folder, result, compiles per task, the state it ended with)."""
  out = tmp_path_factory.mktemp("tiny")
  compiles, ended = CompilesPerTask(), {}

  def keep(state, scenario, model):
    ended["state"] = jax.device_get(state)
    return {}

  res = run_cell(TINY, out, progress=False, hooks=[compiles], extra=keep)
  return out, res, compiles.per_task, ended["state"]


def test_log_has_one_record_per_evaluation_and_tasks_after_the_first_compile_nothing(tiny_run):
  tmp_path, res, compiles, _ = tiny_run
  assert compiles[0] > 0 and compiles[1:] == [0, 0]
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  evaluations = TINY.n_tasks * TINY.steps_per_task // TINY.eval_every
  assert [r["evaluation"] for r in records] == list(range(1, evaluations + 1))
  assert [r["step"] for r in records] == [5 * n for n in range(1, evaluations + 1)]
  assert [r["task"] for r in records] == [n // 8 for n in range(evaluations)]
  np.testing.assert_array_equal(np.asarray([r["acc"] for r in records], np.float32), res.trajectory.transpose(1, 0, 2))
  assert np.asarray(records[0]["loss"]).shape == (2,)
  assert res.matrix.shape == (2, 3, 3) and res.ends.tolist() == [8, 16, 24]
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  # The folder now holds checkpoints: a fresh run there is refused.
  with pytest.raises(CheckpointError, match="already holds checkpoints"):
    run_cell(TINY, tmp_path, progress=False)


class StopAfterBlocks(loop.Hook):
  """Sets `loop.STOP` (as SIGTERM does) after `n` blocks, over all cells."""

  def __init__(self, n):
    self.n, self.seen = n, 0

  def after_block(self, run):
    self.seen += 1
    if self.seen == self.n:
      loop.STOP.set()


def _same_result(a: Result, b: Result):
  assert a.summary == b.summary and a.config == b.config
  np.testing.assert_array_equal(a.matrix, b.matrix)
  np.testing.assert_array_equal(a.trajectory, b.trajectory)
  np.testing.assert_array_equal(a.ends, b.ends)


@pytest.mark.slow
def test_a_stopped_multi_cell_run_resumes_to_the_same_results(tmp_path, tiny_run):
  whole, whole_result, _, _ = tiny_run
  first = dataclasses.replace(TINY, strategy="naive", strategy_options=(), hparams=(), n_tasks=1, steps_per_task=20)
  cells = {"first": first, "second": TINY}
  try:
    with pytest.raises(KeyboardInterrupt):  # stopped after the 2nd block of cell "second"
      run_cells(cells, tmp_path, progress=False, hooks=[StopAfterBlocks(2 + 2)])
  finally:
    loop.STOP.clear()
  done = tmp_path / "first" / "summary.json"
  written = done.stat().st_mtime_ns
  assert not (tmp_path / "second" / "summary.json").exists()
  # The results grow as cells finish: the finished one is already there.
  assert [r["name"] for r in json.loads((tmp_path / "results.json").read_text())] == ["first"]
  resumed = run_cells(cells, tmp_path, resume=True, progress=False)
  assert done.stat().st_mtime_ns == written  # the finished cell was read back, not re-run
  _same_result(whole_result, resumed["second"])
  assert (tmp_path / "second" / "metrics.jsonl").read_text() == (whole / "metrics.jsonl").read_text()


EXPERIMENT = '''"""A tiny CL experiment: TINY of tests/cl/test_cl_run.py, slowed down.

    contlearn run tiny_cl.py --set sleep=1
"""

import dataclasses
import time

from contlearn import loop
from contlearn.cl.cells import run_cell
import test_cl_run


@dataclasses.dataclass(frozen=True)
class Config:
  """The tiny run.

  Attributes:
    sleep: seconds to wait after each block (time to kill the run).
  """

  sleep: float = 0.0


class Slow(loop.Hook):
  def __init__(self, seconds):
    self.seconds = seconds

  def after_block(self, run):
    time.sleep(self.seconds)


def get_config():
  return Config()


def run(cfg, out, *, resume, progress):
  return run_cell(test_cl_run.TINY, out, resume=resume, progress=progress, hooks=[Slow(cfg.sleep)])


def report(result):
  return f"acc {result.summary['acc']:.3f}"
'''


def _cli(tmp_path, *args):
  """`python -m contlearn run tiny_cl.py ARGS` in a subprocess."""
  experiment = tmp_path / "tiny_cl.py"
  experiment.write_text(EXPERIMENT)
  path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "cl"), os.environ.get("PYTHONPATH", "")])
  return subprocess.Popen(
    [sys.executable, "-m", "contlearn", "run", str(experiment), "--no-progress", *args],
    env={**os.environ, "PYTHONPATH": path},
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
  )


def _checkpoints(out):
  folder = out / "checkpoints"
  return [p for p in folder.iterdir() if p.name.isdigit()] if folder.exists() else []


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_summary(tmp_path, tiny_run):
  whole, _, _, _ = tiny_run
  killed = _cli(tmp_path, "--out", str(tmp_path / "killed"), "--set", "sleep=1")
  deadline = time.time() + 120
  while not _checkpoints(tmp_path / "killed") and time.time() < deadline and killed.poll() is None:
    time.sleep(0.05)
  assert killed.poll() is None, killed.stderr.read().decode()[-2000:]
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert not (tmp_path / "killed" / "summary.json").exists()
  again = _cli(tmp_path, "--out", str(tmp_path / "killed"))
  assert again.wait(timeout=120) == 2  # refused: the folder holds checkpoints
  assert b"already holds checkpoints" in again.stderr.read()
  resumed = _cli(tmp_path, "--out", str(tmp_path / "killed"), "--resume")
  assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()[-2000:]
  assert b"acc 0." in resumed.stdout.read()
  _same_result(load_result(whole / "summary.json"), load_result(tmp_path / "killed" / "summary.json"))
  assert (whole / "metrics.jsonl").read_text() == (tmp_path / "killed" / "metrics.jsonl").read_text()


def test_blocks_of_a_task_learn_what_the_whole_task_learns(tmp_path, tiny_run):
  _, blocks, _, _ = tiny_run
  whole = run_cell(dataclasses.replace(TINY, block_steps=0), tmp_path, progress=False)
  np.testing.assert_array_equal(whole.matrix, blocks.matrix)
  np.testing.assert_array_equal(whole.trajectory, blocks.trajectory)


def test_final_state_reads_back_the_state_a_cell_ended_with(tmp_path, tiny_run):
  """From the folder alone: the result, and the state after the last task's end_task (EWC's penalty then holds
  every task's Fisher), leaf for leaf; an unfinished cell is refused in one line."""
  out, res, _, ended = tiny_run
  read, state = final_state(out)
  np.testing.assert_array_equal(read.matrix, res.matrix)
  state = jax.device_get(state)
  assert jax.tree.structure(state) == jax.tree.structure(ended)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ended), strict=True):
    np.testing.assert_array_equal(a, b)
  fisher = jax.tree.leaves(state.strategy.penalty.w)
  assert fisher and all(
    w.shape[0] == len(TINY.seeds) and np.all(np.sum(w, axis=tuple(range(1, w.ndim))) > 0) for w in fisher
  )
  with pytest.raises(CheckpointError, match="has not finished"):
    final_state(tmp_path)
  (tmp_path / "summary.json").write_text((out / "summary.json").read_text())
  with pytest.raises(CheckpointError, match="checkpoints does not exist"):
    final_state(tmp_path)
  assert not (tmp_path / "checkpoints").exists()


def test_the_cell_figures_example_reads_a_finished_cell(tiny_run, capsys):
  """examples/cell_figures.py on the tiny run's folder: every seed's ACC is its final row's mean, and EWC's
  Fisher (one matrix per layer, all seeds together) is what the run ended with."""
  out, res, _, ended = tiny_run
  (row,) = load_example("cell_figures").main([str(out)])
  np.testing.assert_allclose(row["acc_per_seed"], np.round(res.matrix[:, -1].mean(-1) * 100, 2), atol=1e-6)
  assert row["strategy"] == "ewc" and row["seeds"] == list(TINY.seeds)
  fisher = [np.asarray(w) for w in jax.tree.leaves(ended.strategy.penalty.w) if np.ndim(w) == 3]
  assert [f["median"] for f in row["penalty"].values()] == [float(np.median(w)) for w in fisher]
  assert json.loads(capsys.readouterr().out.splitlines()[-1]) == row


def test_each_process_feeds_its_rows_of_every_batch_and_the_batch_must_split_over_the_processes(monkeypatch):
  def feed(rows=None):
    return TaskFeed(lambda t: schedules.cumulative(t, 4, 8, seed=t), 2, steps_per_task=4, block_steps=2, rows=rows)

  whole, shares = feed(), [feed(range(0, 4)), feed(range(4, 8))]
  position = whole.start()
  while position["task"] < 2:
    xs, after = whole.next(position)
    parts = [share.next(position) for share in shares]
    assert [p[1] for p in parts] == [after, after] and [p[0].shape for p in parts] == [(2, 4), (2, 4)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts], axis=1), xs)
    position = after
  assert shares[1].gather(position) == position == {"task": 2, "block": 0}
  monkeypatch.setattr(jax, "process_count", lambda: 3)
  with pytest.raises(ConfigError, match="RunConfig: batch=8 does not split over 3 processes"):
    dataclasses.replace(TINY, batch=8).check()
  dataclasses.replace(TINY, batch=9).check()


def test_max_train_keeps_the_first_rows_and_runs_saved_before_it_resume():
  """`max_train` builds every task from the dataset's first rows; a run saved before the setting existed
  resumes (it reads as 0, all rows), and a changed value does not."""
  from contlearn.cl import datasets
  from contlearn.cl.cells import build_scenario, check_same_run
  from contlearn.cl.run_config import config_json

  sc = build_scenario(dataclasses.replace(TINY, max_train=100))
  np.testing.assert_array_equal(sc.train_n, [100, 100, 100])
  first = np.asarray(sc.train_rows(0, np.arange(100))[0])
  np.testing.assert_array_equal(np.sort(first, axis=1), np.sort(datasets.digits().x_train[:100], axis=1))
  saved = {k: v for k, v in config_json(TINY).items() if k != "max_train"}
  check_same_run(saved, TINY, pathlib.Path("run"))
  with pytest.raises(CheckpointError, match=r"max_train: 0 -> 100"):
    check_same_run(saved, dataclasses.replace(TINY, max_train=100), pathlib.Path("run"))
  with pytest.raises(ConfigError, match="max_train"):
    dataclasses.replace(TINY, max_train=-1)


def test_a_scenario_is_built_from_its_listed_settings_alone():
  """`build_scenario` reads the fields of `SCENARIO_SETTINGS` and no other (cells that agree on them share one
  scenario in `run_cells`), and every listed field is read by some stream."""
  from contlearn.cl.cells import SCENARIO_SETTINGS, build_scenario
  from contlearn.cl.run_config import STREAMS

  class Reads:
    def __init__(self, cfg):
      self.cfg, self.names = cfg, set()

    def __getattr__(self, name):
      self.names.add(name)
      return getattr(self.cfg, name)

  read = set()
  for stream in STREAMS:
    cfg = Reads(
      dataclasses.replace(
        TINY, stream=stream, kind="class" if stream == "split" else "domain", n_tasks=2, max_train=600, standardize=True
      )
    )
    build_scenario(cfg)
    assert cfg.names <= set(SCENARIO_SETTINGS), (stream, cfg.names - set(SCENARIO_SETTINGS))
    read |= cfg.names
  assert read == set(SCENARIO_SETTINGS)


def test_standardize_builds_every_task_from_standardized_inputs_and_runs_saved_before_it_resume():
  """`standardize` permutes the standardized inputs (train statistics); a run saved before the setting
  existed resumes (it reads as false), and a changed value does not."""
  from contlearn.cl import datasets
  from contlearn.cl.cells import build_scenario, check_same_run
  from contlearn.cl.run_config import config_json

  plain, standard = build_scenario(TINY), build_scenario(dataclasses.replace(TINY, standardize=True))
  raw = datasets.digits().x_train.astype(np.float64)
  rows = np.arange(int(plain.train_n[1]))
  x_plain, x_standard = np.asarray(plain.train_rows(1, rows)[0]), np.asarray(standard.train_rows(1, rows)[0])
  np.testing.assert_allclose(x_standard, (x_plain - raw.mean()) / raw.std(), rtol=0, atol=1e-5)
  saved = {k: v for k, v in config_json(TINY).items() if k != "standardize"}
  check_same_run(saved, TINY, pathlib.Path("run"))
  with pytest.raises(CheckpointError, match=r"standardize: False -> True"):
    check_same_run(saved, dataclasses.replace(TINY, standardize=True), pathlib.Path("run"))
