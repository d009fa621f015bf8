"""The compress_arc experiment: its table and (slow) a short run through the CLI; its help: tests/test_help.py."""

import json

import pytest

from contlearn import catalog
from contlearn.cli import main


def _module():
  return catalog.load("compress_arc")


def test_report_puts_the_paper_beside_ours():
  config = {"report_at": [500], "steps": 2000, "per_split": 2, "seed": 0}
  rows = {"a": {"lanes": 1}, "b": {"lanes": 1}}
  split = {"puzzles": rows, "pass@1": {"500": 0.0, "2000": 0.5}, "pass@2": {"500": 0.5, "2000": 1.0}, "seconds": 60.0}
  table = _module().report({"config": config, "splits": {"training": split}, "seconds": 60.0})
  assert "| training | 2 | 500 | 0.0 | 50.0 | ~25 | 30 |" in table
  assert "| training | 2 | 2000 | 50.0 | 100.0 | 34.75 | 30 |" in table


@pytest.mark.slow
def test_a_smoke_run_writes_its_table_and_resumes(tmp_path):
  args = ["run", "compress_arc", "--set", "scale=smoke", "--set", "per_split=1", "--out", str(tmp_path)]
  assert main([*args, "--no-progress"]) == 0
  result = json.loads((tmp_path / "results.json").read_text())
  summary = result["splits"]["training"]
  assert set(summary["pass@2"]) == {"10", "20"} and len(summary["puzzles"]) == 1
  assert "| training | 1 | 20 |" in (tmp_path / "results.md").read_text()
  assert main([*args, "--no-progress", "--resume"]) == 0  # finished groups are read back, not trained again
  again = json.loads((tmp_path / "results.json").read_text())["splits"]["training"]
  assert again["puzzles"] == summary["puzzles"] and again["pass@2"] == summary["pass@2"]
