"""The domain-shift and needle-in-a-haystack experiments run small versions end to end."""

import json

import numpy as np
import pytest

from contlearn.cl import shift_metrics
from contlearn.cli import main


@pytest.mark.slow  # about 15 s of CPU; more on a shared machine
def test_domain_shift_small_run_writes_consistent_results(tmp_path, capsys):
  out = tmp_path / "ds"
  assert main(["run", "nl_domain_shift", "--", "--small", "--models", "transformer", "--out", str(out)]) == 0
  saved = json.loads((out / "domain_shift.json").read_text())
  order = saved["config"]["order"]
  r = saved["models"]["transformer"]
  matrix = np.array(r["matrix"])
  assert matrix.shape == (4, 3) and order == [0, 1, 2, 0]
  first = np.array(r["trace"][0][2])
  assert np.all(first > 7.5) and np.all(matrix < first)  # from about 8 bits at the start, all learned
  assert matrix[0, 0] < matrix[0, 2]  # after the plays, the plays are the best-known domain
  assert r["forgetting"] == pytest.approx(shift_metrics.forgetting(matrix, order))
  assert r["recovery"][0]["forgot"] == pytest.approx(matrix[2, 0] - matrix[0, 0])
  phases = [[(tokens, v) for phase, tokens, v in r["trace"] if phase == j] for j in range(4)]
  assert all([t for t, _ in p] == [2048, 4096, 8192] for p in phases)  # after 1, 2 and 4 chunks of 2,048
  assert [p[-1][1] for p in phases] == r["matrix"]
  assert (out / "domain_shift.png").stat().st_size > 10_000
  assert "| 4: plays |" in capsys.readouterr().out


@pytest.mark.slow  # about 15 s of CPU; more on a shared machine
def test_niah_small_run_reports_accuracy_per_task_and_length(tmp_path):
  out = tmp_path / "niah"
  assert main(["run", "nl_niah", "--", "--small", "--models", "transformer", "--out", str(out)]) == 0
  r = json.loads((out / "niah.json").read_text())["models"]["transformer"]
  assert set(r["accuracy"]) == {"single @1L", "single @2L", "multi-key (2) @1L", "multi-key (2) @2L"}
  assert all(0.0 <= r["accuracy"][k] <= r["digits"][k] <= 1.0 for k in r["accuracy"])  # exact match <= digit rate
  assert r["loss"] < 5.0  # the answer loss fell from about ln(256) = 5.5
