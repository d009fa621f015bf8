"""The reasoning_sudoku experiment end to end through the CLI, its resume, its help and its config checks."""

import json

import pytest

from contlearn import catalog
from contlearn.cli import main

TINY = [
  *("smoke=true", "train=16", "test=8", "steps=4", "block=2", "batch=4", "max_segments=3", "seeds=0,1"),
  *("cycles=1", "latent_steps=1", "width=8"),
]


def _run(out, *extra):
  args = ["run", "reasoning_sudoku", "--out", str(out), "--no-progress"]
  for setting in TINY:
    args += ["--set", setting]
  return main(args + list(extra))


@pytest.mark.slow  # two models compiled and evaluated, twice: make test-all
def test_a_tiny_run_writes_results_and_a_resume_keeps_them(tmp_path):
  assert _run(tmp_path) == 0
  result = json.loads((tmp_path / "results.json").read_text())
  assert result["config"]["seeds"] == [0, 1] and result["config"]["train"] == 16
  rows = {r["model"]: r for r in result["rows"]}
  assert list(rows) == ["trm", "single_pass"]
  assert rows["trm"]["segments"] == 3 and rows["single_pass"]["segments"] == 1
  for r in rows.values():
    n = r["segments"]
    assert len(r["exact"]) == len(r["blanks"]) == 2 and all(len(seed) == n for seed in r["exact"] + r["blanks"])
    for key in ("halt_segments", "halt_exact", "halt_decision", "train_loss"):
      assert len(r[key]) == 2, key
    for key in ("exact", "blanks", "halt_exact", "halt_decision"):
      values = [v for seed in r[key] for v in (seed if isinstance(seed, list) else [seed])]
      assert all(0.0 <= v <= 1.0 for v in values), (key, values)
    assert all(1.0 <= s <= n for s in r["halt_segments"])
    assert (tmp_path / r["model"] / "metrics.jsonl").read_text().count("\n") == 2  # 4 steps in blocks of 2
    assert (tmp_path / r["model"] / "checkpoints").is_dir()
  table = (tmp_path / "results.md").read_text()
  assert "| TRM (recursive) |" in table and "| single pass |" in table and "exact@3" in table

  before = (tmp_path / "results.json").read_text()
  assert _run(tmp_path, "--resume") == 0  # finished models are kept, not trained again
  assert json.loads((tmp_path / "results.json").read_text()) == json.loads(before)
  assert _run(tmp_path) != 0  # without --resume, existing checkpoints are refused


def test_help_lists_the_fields(capsys):
  assert main(["run", "reasoning_sudoku", "--help"]) == 0
  out = capsys.readouterr().out
  assert "experiment reasoning_sudoku: Reasoning on 6x6 Sudoku" in out
  assert "models (--only NAMES): trm, single_pass" in out
  documented = {f.key: f.description for f in catalog.fields(catalog.load("reasoning_sudoku").get_config())}
  for key, description in documented.items():
    assert description, key
    assert f"  {key}: " in out


@pytest.mark.parametrize(
  "setting, message",
  [
    ("steps=70", "steps=70 must be a multiple of block=50"),
    ("seeds=1,1", "--set seeds=1,1: must be one or more distinct seeds"),
    ("models=trm,hrm", "--set models=trm,hrm: must be one or more of trm, single_pass"),
    ("ema_rate=1", "--set ema_rate=1: must be a number strictly between 0 and 1"),
  ],
)
def test_bad_settings_are_refused_in_one_line(tmp_path, capsys, setting, message):
  assert main(["run", "reasoning_sudoku", "--set", setting, "--out", str(tmp_path), "--no-progress"]) == 2
  assert message in capsys.readouterr().err.strip().splitlines()[-1]
