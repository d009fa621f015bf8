"""The reasoning experiments (reasoning_sudoku, reasoning_maze): their scores, a run end to end through the CLI,
its resume, the help and the config checks."""

import json

import numpy as np
import pytest

from contlearn import catalog
from contlearn.cli import main
from contlearn.puzzles import PuzzleConfig, PuzzleSet, arc, arc_canvas, arc_sets
from contlearn.reasoning import comparison

TINY = [
  *("scale=smoke", "steps=4", "block=2", "batch=4", "max_segments=3"),
  *("seeds=0,1", "cycles=1", "latent_steps=1", "high_cycles=1", "low_steps=1", "width=8", "eval_batch=5"),
]
TINY_PUZZLES = {
  "reasoning_sudoku": ("puzzles.train=16", "puzzles.test=8"),
  "reasoning_maze": ("puzzles.train=16", "puzzles.test=8"),
  "reasoning_arc": ("puzzles.tasks=1", "puzzles.augmentations=2"),
}


def test_scores_count_exact_answers_filled_tokens_and_the_halting_decision():
  # two puzzles of three tokens; the answer changes tokens 1, 2 of puzzle 0 and token 2 of puzzle 1
  inputs = np.array([[1, 0, 0], [2, 2, 0]])
  labels = np.array([[1, 2, 3], [2, 2, 1]])
  test = PuzzleSet(PuzzleConfig(), inputs, labels, np.zeros(2, np.int32), {})
  answers = np.array(  # [seeds 1, segments 2, puzzles 2, tokens 3]
    [[[[1, 2, 0], [2, 2, 1]], [[1, 2, 3], [2, 0, 1]]]]
  )
  halt_logits = np.array([[[-1.0, 2.0], [3.0, -1.0]]])  # puzzle 0 halts at segment 2, puzzle 1 at segment 1
  s = comparison.scores(answers, halt_logits, test)
  np.testing.assert_allclose(s["exact"], [[0.5, 0.5]])  # segment 1: puzzle 1 right; segment 2: puzzle 0 right
  np.testing.assert_allclose(s["filled"], [[2 / 3, 3 / 3]])  # token 1 of puzzle 1 is a clue, not counted
  np.testing.assert_allclose(s["halt_segments"], [1.5])
  np.testing.assert_allclose(s["halt_exact"], [1.0])  # both halted on a right answer
  np.testing.assert_allclose(s["halt_decision"], [1.0])  # halt exactly where right, continue where wrong


def test_maze_scores_break_exact_accuracy_down_by_path_length_and_the_report_shows_it():
  # four one-token mazes of path lengths 1, 1, 4, 7; the model solves the first and the third
  labels = np.array([[4], [4], [4], [4]])
  test = PuzzleSet(
    PuzzleConfig(kind="maze"), np.ones_like(labels), labels, np.zeros(4, np.int32), {"path": np.array([1, 1, 4, 7])}
  )
  answers = np.array([[[[4], [1], [4], [1]]], [[[4], [4], [4], [4]]]])  # [seeds 2, segments 1, puzzles 4, tokens 1]
  s = comparison.scores(answers, np.zeros((2, 1, 4)), test)
  assert comparison.strata(test)["ranges"] == [[1, 1, 2], [4, 4, 1], [7, 7, 1]]
  np.testing.assert_allclose(s["exact_by"], [[0.5, 1.0, 0.0], [1.0, 1.0, 1.0]])
  row = {
    "label": "m",
    "segments": 1,
    "parameters": 1,
    "strata": {"meta": "path", "ranges": [[1, 1, 2], [4, 4, 1], [7, 7, 1]]},
  }
  row |= {k: np.asarray(v).tolist() for k, v in s.items()}
  result = {"rows": [row], "config": {"steps": 1, "batch": 1, "seeds": [0, 1], "puzzles": {"kind": "maze", "size": 1}}}
  text = comparison.report(result | {"puzzles": {"train": 1, "test": 4}, "seconds": 1.0})
  assert (
    "| model | path 1 (2) | path 4 (1) | path 7 (1) |" in text
    and "| m | 75.0 ± 25.0 | 100.0 ± 0.0 | 50.0 ± 50.0 |" in text
  )


def test_arc_scores_vote_over_augmentations_and_leave_the_padding_out():
  grid = np.array([[1, 2], [0, 1]])
  task = arc.ArcTask("t", ((grid, grid.T),), ((grid.T, grid), (grid, grid.T)))
  _, test = arc_sets.build(PuzzleConfig(kind="arc", size=4, augmentations=3), [], [task])  # 2 inputs x 3 augs
  right = np.broadcast_to(test.labels, (2, 1, *test.labels.shape)).copy()  # [seeds 2, segments 1, P, L]
  first = np.flatnonzero(test.meta["example"] == 0)  # input 0 under its 3 augmentations, the identity first
  right[1, 0, first[0]] = arc_canvas.PAD  # seed 1: the identity's answer to input 0 blank, its two others right
  padding = test.labels == arc_canvas.PAD
  right[:, :, padding] = 5  # whatever is predicted on the padding does not count
  s = comparison.scores(right, np.zeros((2, 1, len(test))), test, ignore_label=arc_canvas.PAD)
  np.testing.assert_allclose(s["exact"], [[1.0], [5 / 6]])
  np.testing.assert_allclose(s["pass@1"], [1.0, 1.0])  # the two augmentations still outvote the blank
  right[1, 0, first] = arc_canvas.PAD  # seed 1: every answer to input 0 blank
  s = comparison.scores(right, np.zeros((2, 1, len(test))), test, ignore_label=arc_canvas.PAD)
  np.testing.assert_allclose(s["pass@2"], [1.0, 0.5])  # one test input of two passes


def test_models_have_equal_parameters_and_the_single_pass_one_segment():
  cfg = catalog.load("reasoning_sudoku").get_config()
  trm, hrm, single = (comparison.model_config(cfg, m) for m in ("trm", "hrm", "single_pass"))
  assert (trm.layers, hrm.layers, single.layers) == (2, 1, 2)  # HRM: two modules of one block each
  assert (single.cycles, single.latent_steps, single.max_segments) == (1, 1, 1)
  assert trm.length == 36 and trm.vocab == 7


def _run(name, out, *extra):
  args = ["run", name, "--out", str(out), "--no-progress"]
  for setting in TINY + list(TINY_PUZZLES[name]):
    args += ["--set", setting]
  return main(args + list(extra))


@pytest.mark.slow  # three models compiled and evaluated, twice: make test-all
@pytest.mark.parametrize("name", list(TINY_PUZZLES))
def test_a_tiny_run_writes_results_and_a_resume_keeps_them(tmp_path, name):
  assert _run(name, tmp_path) == 0
  result = json.loads((tmp_path / "results.json").read_text())
  assert result["config"]["seeds"] == [0, 1] and result["puzzles"]["train"] > 0
  rows = {r["model"]: r for r in result["rows"]}
  assert list(rows) == ["trm", "hrm", "single_pass"]
  assert rows["trm"]["segments"] == rows["hrm"]["segments"] == 3 and rows["single_pass"]["segments"] == 1
  for r in rows.values():
    n = r["segments"]
    assert len(r["exact"]) == len(r["filled"]) == 2 and all(len(seed) == n for seed in r["exact"] + r["filled"])
    for key in ("halt_segments", "halt_exact", "halt_decision", "train_loss"):
      assert len(r[key]) == 2, key
    for key in ("exact", "filled", "halt_exact", "halt_decision"):
      values = [v for seed in r[key] for v in (seed if isinstance(seed, list) else [seed])]
      assert all(0.0 <= v <= 1.0 for v in values), (key, values)
    assert all(1.0 <= s <= n for s in r["halt_segments"])
    assert (tmp_path / r["model"] / "metrics.jsonl").read_text().count("\n") == 2  # 4 steps in blocks of 2
    assert (tmp_path / r["model"] / "checkpoints").is_dir()
  table = (tmp_path / "results.md").read_text()
  assert "| TRM (recursive) |" in table and "| HRM (hierarchical) |" in table and "exact@3" in table
  assert (tmp_path / "segments.png").stat().st_size > 0

  before = (tmp_path / "results.json").read_text()
  assert _run(name, tmp_path, "--resume") == 0  # finished models are kept, not trained again
  assert json.loads((tmp_path / "results.json").read_text()) == json.loads(before)
  assert _run(name, tmp_path) != 0  # without --resume, existing checkpoints are refused


@pytest.mark.parametrize(
  "name, first_line",
  [("reasoning_sudoku", "on 6x6 Sudoku"), ("reasoning_maze", "on small"), ("reasoning_arc", "on ARC-AGI")],
)
def test_help_lists_the_fields(capsys, name, first_line):
  assert main(["run", name, "--help"]) == 0
  out = capsys.readouterr().out
  assert f"experiment {name}: Reasoning {first_line}" in out
  assert "models (--only NAMES): trm, hrm, single_pass" in out
  documented = {f.key: f.description for f in catalog.fields(catalog.load(name).get_config())}
  assert "puzzles.size" in documented and "scale" in documented
  for key, description in documented.items():
    assert description, key
    assert f"  {key}: " in out


@pytest.mark.parametrize(
  "setting, message",
  [
    ("steps=70", "steps=70 must be a multiple of block=50"),
    ("seeds=1,1", "--set seeds=1,1: must be one or more distinct seeds"),
    ("models=trm,ebt", "--set models=trm,ebt: must be one or more of trm, hrm, single_pass"),
    ("ema_rate=1", "--set ema_rate=1: must be a number strictly between 0 and 1"),
    ("scale=huge", "--set scale=huge: must be one of smoke, cpu, gpu"),
    ("puzzles.size=5", "--set puzzles.size=5: must be one of 4, 6, 9 for a sudoku"),
  ],
)
def test_bad_settings_are_refused_in_one_line(tmp_path, capsys, setting, message):
  assert main(["run", "reasoning_sudoku", "--set", setting, "--out", str(tmp_path), "--no-progress"]) == 2
  assert message in capsys.readouterr().err.strip().splitlines()[-1]
