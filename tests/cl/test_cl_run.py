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

from contlearn import loop
from contlearn.cl import experiment as ex
from contlearn.errors import CheckpointError

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

# 3 permuted-digits tasks x 4 blocks of 10 steps; EWC so that end_task does work.
TINY = ex.RunConfig(dataset="digits", stream="permuted", kind="domain", n_tasks=3, hidden=(16,),
                    optimizer="sgd", lr=0.05, steps_per_task=40, batch=8, eval_every=5,
                    block_steps=10, max_test=50, strategy="ewc",
                    strategy_options=("n_fisher=32", "chunk=16"), hparams=("strength=10",),
                    seeds=(0, 1), checkpoint_every=1)


class CompilesPerTask(loop.Hook):
  """Counts compilations, split at each task end (after the task's end_task ran)."""

  def __init__(self):
    self.events, self.per_task = [], []
    jax.monitoring.register_event_duration_secs_listener(self._listen)

  def _listen(self, event, duration, **kwargs):
    if event == COMPILE_EVENT:
      self.events.append(event)

  def after_block(self, run):
    if run.position["block"] == 0:
      self.per_task.append(len(self.events) - sum(self.per_task))

  def close(self):
    jax.monitoring.unregister_event_duration_listener(self._listen)


def test_log_has_one_record_per_evaluation_and_tasks_after_the_first_compile_nothing(tmp_path):
  compiles = CompilesPerTask()
  res = ex.run_cell(TINY, tmp_path, progress=False, hooks=[compiles])
  assert compiles.per_task[0] > 0 and compiles.per_task[1:] == [0, 0]
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  evaluations = TINY.n_tasks * TINY.steps_per_task // TINY.eval_every
  assert [r["evaluation"] for r in records] == list(range(1, evaluations + 1))
  assert [r["step"] for r in records] == [5 * n for n in range(1, evaluations + 1)]
  assert [r["task"] for r in records] == [n // 8 for n in range(evaluations)]
  np.testing.assert_array_equal(np.asarray([r["acc"] for r in records], np.float32),
                                res.trajectory.transpose(1, 0, 2))
  assert np.asarray(records[0]["loss"]).shape == (2,)
  assert res.matrix.shape == (2, 3, 3) and res.ends.tolist() == [8, 16, 24]
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  # The folder now holds checkpoints: a fresh run there is refused.
  with pytest.raises(CheckpointError, match="already holds checkpoints"):
    ex.run_cell(TINY, tmp_path, progress=False)


class StopAfterBlocks(loop.Hook):
  """Sets `loop.STOP` (as SIGTERM does) after `n` blocks, over all cells."""

  def __init__(self, n):
    self.n, self.seen = n, 0

  def after_block(self, run):
    self.seen += 1
    if self.seen == self.n:
      loop.STOP.set()


def _same_result(a: ex.Result, b: ex.Result):
  assert a.summary == b.summary and a.config == b.config
  np.testing.assert_array_equal(a.matrix, b.matrix)
  np.testing.assert_array_equal(a.trajectory, b.trajectory)
  np.testing.assert_array_equal(a.ends, b.ends)


def test_a_stopped_multi_cell_run_resumes_to_the_same_results(tmp_path):
  short = dataclasses.replace(TINY, n_tasks=2, steps_per_task=20)
  cells = {"ewc": short, "er": ex.Method("ER", "er", ("capacity=40",)).cell(short)}
  whole = ex.run_cells(cells, tmp_path / "whole", progress=False)
  try:
    with pytest.raises(KeyboardInterrupt):  # stopped in the 2nd block of cell "er"
      ex.run_cells(cells, tmp_path / "cut", progress=False, hooks=[StopAfterBlocks(6)])
  finally:
    loop.STOP.clear()
  done = tmp_path / "cut" / "ewc" / "summary.json"
  written = done.stat().st_mtime_ns
  assert not (tmp_path / "cut" / "er" / "summary.json").exists()
  resumed = ex.run_cells(cells, tmp_path / "cut", resume=True, progress=False)
  assert done.stat().st_mtime_ns == written  # the finished cell was read back, not re-run
  for name in cells:
    _same_result(whole[name], resumed[name])
  cut_log = (tmp_path / "cut" / "er" / "metrics.jsonl").read_text()
  assert cut_log == (tmp_path / "whole" / "er" / "metrics.jsonl").read_text()


SCRIPT = """
import pathlib, sys, time
from contlearn import loop
from contlearn.cl import experiment as ex
import test_cl_run

class Slow(loop.Hook):
  def after_block(self, run):
    time.sleep(float(sys.argv[3]))

ex.run_cell(test_cl_run.TINY, pathlib.Path(sys.argv[1]), resume=sys.argv[2] == "resume",
            progress=False, hooks=[Slow()])
"""


def _cell(out, mode, sleep=0.0):
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "cl")])}
  return subprocess.Popen([sys.executable, "-c", SCRIPT, str(out), mode, str(sleep)], env=env,
                          stderr=subprocess.PIPE)


def _checkpoints(out):
  folder = out / "checkpoints"
  return [p for p in folder.iterdir() if p.name.isdigit()] if folder.exists() else []


def test_a_killed_run_resumes_to_the_same_summary(tmp_path):
  whole = _cell(tmp_path / "whole", "fresh")
  killed = _cell(tmp_path / "killed", "fresh", sleep=1.0)
  deadline = time.time() + 120
  while not _checkpoints(tmp_path / "killed") and time.time() < deadline and killed.poll() is None:
    time.sleep(0.05)
  assert killed.poll() is None, killed.stderr.read().decode()[-2000:]
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert not (tmp_path / "killed" / "summary.json").exists()
  resumed = _cell(tmp_path / "killed", "resume")
  for p in (whole, resumed):
    assert p.wait(timeout=120) == 0, p.stderr.read().decode()[-2000:]
  a = ex.load_result(tmp_path / "whole" / "summary.json")
  b = ex.load_result(tmp_path / "killed" / "summary.json")
  _same_result(a, b)
  assert (tmp_path / "whole" / "metrics.jsonl").read_text() == (tmp_path / "killed" / "metrics.jsonl").read_text()
