"""The compress_arc experiment: its help, its config checks, its table, and (slow) a short run through the CLI."""

import json

import pytest

from contlearn import catalog
from contlearn.cli import main


def _module():
  return catalog.load("compress_arc")


def test_help_lists_every_field_documented(capsys):
  assert main(["run", "compress_arc", "--help"]) == 0
  out = capsys.readouterr().out
  assert "experiment compress_arc: ARC-AGI without pretraining" in out
  for f in catalog.fields(_module().get_config()):
    assert f.description, f.key
    assert f"  {f.key}: " in out


@pytest.mark.parametrize(
  "setting, message",
  [
    ("block=300", "--set block=300: must be a divisor of steps=2000 and of report_at"),
    ("splits=training,test", "--set splits=training,test: must be one or more of training, evaluation"),
    ("solver.b1=1.5", "--set solver.b1=1.5: must be"),
    ("scale=huge", "--set scale=huge: must be one of cpu, smoke"),
  ],
)
def test_bad_settings_are_refused_in_one_line(tmp_path, capsys, setting, message):
  assert main(["run", "compress_arc", "--set", setting, "--out", str(tmp_path), "--no-progress"]) == 2
  assert message in capsys.readouterr().err.strip().splitlines()[-1]


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
