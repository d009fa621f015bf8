"""Puzzle sets: shapes, determinism, and train/test splits that share no puzzle up to symmetry."""

import numpy as np
import pytest

from contlearn.errors import ConfigError
from contlearn.field_checks import FieldError
from contlearn.puzzles import PuzzleConfig, PuzzleFeed, dihedral, puzzle_kind, splits
from tests.puzzles.checks import count_solutions, first_appearance, geometric_images, valid_grid


@pytest.fixture(scope="module")
def sudoku4():
  return splits(PuzzleConfig(kind="sudoku", size=4, train=40, test=40, seed=3, min_clues=6))


@pytest.fixture(scope="module")
def sudoku6():
  return splits(PuzzleConfig(kind="sudoku", size=6, train=25, test=25, seed=1))


@pytest.fixture(scope="module")
def mazes():
  return splits(PuzzleConfig(kind="maze", size=3, train=40, test=40, seed=2))


def test_sudoku_sets_hold_valid_unique_puzzles(sudoku6):
  train, test = sudoku6
  assert train.inputs.shape == train.labels.shape == (25, 36) and train.inputs.dtype == np.int32
  assert (train.ids == np.arange(25)).all() and (test.ids == np.arange(25, 50)).all()
  for x, y, clues in zip(test.inputs, test.labels, test.meta["clues"]):
    assert valid_grid(y, 6) and (x != 0).sum() == clues
    count, solution = count_solutions(x, 6)
    assert count == 1 and (solution == y).all()
  assert (train.meta["difficulty"] >= 36 - train.meta["clues"] + 1).all()


def _orbit(grid, n):
  """Every puzzle a Sudoku symmetry makes of `grid`, relabelling-free (first-appearance form)."""
  return {first_appearance(image) for image in geometric_images(grid, n)}


@pytest.mark.parametrize("which, n", [("sudoku4", 4), ("sudoku6", 6)])
def test_no_puzzle_is_a_symmetry_of_another(which, n, request):
  """Checked by enumerating every symmetry, independently of the canonical form the split uses."""
  train, test = request.getfixturevalue(which)
  train_forms = [first_appearance(x) for x in train.inputs]
  test_forms = [first_appearance(x) for x in test.inputs]
  for i, x in enumerate(test.inputs):
    orbit = _orbit(x, n)
    assert not orbit & set(train_forms)
    assert not orbit & set(test_forms[:i] + test_forms[i + 1 :])


def test_raw_draws_do_repeat_up_to_symmetry(sudoku4):
  """Without the canonical-form check the 4x4 sets above would hold equivalent puzzles: the test above can fail."""
  kind = puzzle_kind(sudoku4.train.config)
  orbits = [frozenset(_orbit(kind.generate(np.random.default_rng([3, d])).input, 4)) for d in range(80)]
  assert len(set(orbits)) < 80


def test_no_maze_is_a_rotation_or_reflection_of_another(mazes):
  train, test = mazes
  assert train.inputs.shape == (40, 49) and set(train.meta) == {"path"}
  everything = np.concatenate([train.inputs, test.inputs]).reshape(-1, 7, 7)
  seen = set()
  for m in everything:
    images = {dihedral.transform(m, k).tobytes() for k in range(8)}
    assert not images & seen
    seen |= images


def test_augmented_training_blocks_never_show_a_test_puzzle(mazes, sudoku4):
  for train, test in (mazes, sudoku4):
    feed = PuzzleFeed(train, steps=4, batch=10, seed=0)
    shown = {x.tobytes() for p in range(20) for x in feed.next(p)[0].inputs.reshape(40, -1)}
    assert len(shown) > 40 and not shown & {x.tobytes() for x in test.inputs}


def test_sets_are_deterministic_given_a_seed():
  config = PuzzleConfig(kind="maze", size=4, train=6, test=3, seed=5)
  a, b = splits(config), splits(config)
  for x, y in zip(a, b):
    assert (x.inputs == y.inputs).all() and (x.labels == y.labels).all() and (x.meta["path"] == y.meta["path"]).all()
  c = splits(PuzzleConfig(kind="maze", size=4, train=6, test=3, seed=6))
  assert not (a.train.inputs == c.train.inputs).all()


def test_kind_shapes():
  assert puzzle_kind(PuzzleConfig(kind="sudoku", size=9))[:2] == (81, 10)
  assert puzzle_kind(PuzzleConfig(kind="maze", size=5))[:2] == (121, 5)


def test_config_fields_are_checked():
  with pytest.raises(FieldError, match="kind='chess': must be one of sudoku, maze"):
    PuzzleConfig(kind="chess")
  with pytest.raises(FieldError, match="size=5: must be one of 4, 6, 9 for a sudoku"):
    PuzzleConfig(size=5)
  with pytest.raises(FieldError, match="size=1: must be an integer >= 2 for a maze"):
    PuzzleConfig(kind="maze", size=1)
  with pytest.raises(FieldError, match="train=0: must be an integer > 0"):
    PuzzleConfig(train=0)
  with pytest.raises(FieldError, match="min_clues=-1"):
    PuzzleConfig(min_clues=-1)


def test_asking_for_more_puzzles_than_exist_says_so():
  """A 2x2-cell maze has one shape and a few start/goal placements up to symmetry."""
  with pytest.raises(ConfigError, match="only .* puzzles distinct up to symmetry in 300 draws, 20 asked"):
    splits(PuzzleConfig(kind="maze", size=2, train=15, test=5))


def test_a_difficulty_filter_keeps_only_hard_sudoku():
  easy = splits(PuzzleConfig(kind="sudoku", size=6, train=10, test=0, seed=4)).train
  assert (easy.meta["difficulty"] < 40).any()  # without the filter, easier puzzles come: the check below can fail
  train, test = splits(PuzzleConfig(kind="sudoku", size=6, train=5, test=3, seed=4, min_difficulty=40))
  for puzzles in (train, test):
    assert (puzzles.meta["difficulty"] >= 40).all()
    for x, y in zip(puzzles.inputs, puzzles.labels):
      count, solution = count_solutions(x, 6)
      assert count == 1 and (solution == y).all()


def test_the_difficulty_filter_is_for_sudoku_only_and_says_when_it_finds_too_few():
  with pytest.raises(FieldError, match="min_difficulty=-1: must be an integer >= 0"):
    PuzzleConfig(min_difficulty=-1)
  with pytest.raises(FieldError, match="min_difficulty=50: must be 0 for maze puzzles \\(sudoku only\\)"):
    PuzzleConfig(kind="maze", size=3, min_difficulty=50)
  with pytest.raises(FieldError, match="min_difficulty=50: must be 0 for arc puzzles \\(sudoku only\\)"):
    PuzzleConfig(kind="arc", size=30, min_difficulty=50)
  with pytest.raises(FieldError, match="min_clues=3: must be 0 for maze puzzles \\(sudoku only\\)"):
    PuzzleConfig(kind="maze", size=3, min_clues=3)
  message = "only 0 puzzles distinct up to symmetry with difficulty >= 1000 in 200 draws, 1 asked; .* lower min_diff"
  with pytest.raises(ConfigError, match=message):
    splits(PuzzleConfig(kind="sudoku", size=4, train=1, test=0, min_difficulty=1000))
