"""The ebt_lm experiment: equal sizes, independent held-out windows, the table, a run end to end and its resume."""

import json

import numpy as np
import pytest

from contlearn import catalog
from contlearn.cli import main
from contlearn.models.sizing import param_count
from contlearn.stream.base import Chunk

TINY = [
  *("scale=smoke", "seeds=0,1", "tokens=512", "steps=2", "batch=4", "heldout=40"),
  *("think_steps=1,3", "starts=1,2", "ebt.d_model=8", "transformer.d_model=8"),
]


def _module():
  return catalog.load("ebt_lm")


def test_the_transformer_matches_the_ebt_in_parameters_and_window():
  m = _module()
  cfg = m.Config()
  transformer = m.transformer_config(cfg)
  assert transformer.mixer.window == cfg.ebt.seq
  ebt = m.ebt_parameters(cfg.ebt)
  assert abs(param_count(transformer) - ebt) / ebt < 0.02


def test_held_out_windows_are_independent_sequences():
  tokens = np.arange(3 * 2 * 5).reshape(3, 2, 5)
  chunk = _module().windows(Chunk(tokens, tokens[..., 1:] > 0))
  assert chunk.tokens.shape == (1, 6, 5) and chunk.mask.shape == (1, 6, 4)
  np.testing.assert_array_equal(chunk.tokens[0, 3], tokens[1, 1])


def test_report_puts_thinking_steps_starts_and_the_gain_beside_the_transformer():
  config = {"think_steps": [1, 4], "starts": [1, 2], "ebt": {"steps": 2, "seq": 64}, "heldout": 8, "batch": 2}
  config["seeds"] = [0, 1]
  ebt = {
    "model": "ebt",
    "parameters": 100,
    "tokens": 1000,
    "bpb_by_steps": [[[4.0, 5.0, 6.0], [3.0, 5.0, 4.0]], [[4.0, 5.0, 6.0], [3.0, 5.0, 4.0]]],  # [seeds, steps, dom]
    "bpb_by_starts": [[[3.5, 5.0, 5.0], [3.4, 4.9, 4.9]], [[3.5, 5.0, 5.0], [3.4, 4.9, 4.9]]],
  }
  transformer = {"model": "transformer", "parameters": 101, "bpb": [[3.0, 4.0, 5.0], [3.2, 4.2, 5.2]]}
  table = _module().report({"config": config, "rows": [ebt, transformer], "seconds": 1.0})
  assert "| EBT | 100 | 4 steps, N=1 | 3.000 ± 0.000 | 5.000 ± 0.000 | 4.000 ± 0.000 |" in table
  assert "| EBT | 100 | 2 steps, best of N=2 | 3.400 ± 0.000 |" in table
  assert "| EBT gain |  | 1 -> 4 steps (relative) | 0.333 ± 0.000 | 0.000 ± 0.000 | 0.500 ± 0.000 |" in table
  assert "| Transformer | 101 | one pass | 3.100 ± 0.100 | 4.100 ± 0.100 | 5.100 ± 0.100 |" in table


@pytest.mark.slow
def test_a_tiny_run_writes_its_table_and_resumes(tmp_path):
  args = ["run", "ebt_lm", *[a for s in TINY for a in ("--set", s)], "--out", str(tmp_path), "--no-progress"]
  assert main(args) == 0
  result = json.loads((tmp_path / "results.json").read_text())
  ebt, transformer = result["rows"]
  assert np.asarray(ebt["bpb_by_steps"]).shape == (2, 2, 3)  # [seeds, think_steps, domains]
  assert np.asarray(ebt["bpb_by_starts"]).shape == (2, 2, 3)
  assert np.asarray(transformer["bpb"]).shape == (2, 3)
  assert np.all(np.isfinite(ebt["bpb_by_steps"])) and len(ebt["alpha"]) == 2
  assert "| EBT gain |" in (tmp_path / "results.md").read_text()
  assert (tmp_path / "thinking.png").stat().st_size > 0
  before = (tmp_path / "results.json").read_text()
  assert main([*args, "--resume"]) == 0  # finished models are kept
  assert json.loads((tmp_path / "results.json").read_text()) == json.loads(before)
