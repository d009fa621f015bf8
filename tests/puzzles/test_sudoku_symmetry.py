"""Sudoku symmetries keep puzzles valid and map solutions to solutions; the canonical form is exact."""

import numpy as np
import pytest

from contlearn.puzzles import sudoku, sudoku_symmetry
from contlearn.puzzles.transforms import apply
from tests.puzzles.checks import brute_canonical, count_solutions, first_appearance, geometric_images, valid_grid


def _puzzles(n, seeds, min_clues=0):
  return [sudoku.generate(sudoku.BOXES[n], np.random.default_rng([n, s]), min_clues) for s in seeds]


@pytest.mark.parametrize("n", [4, 6, 9])
def test_augmented_puzzle_solves_to_the_augmented_solution(n):
  box = sudoku.BOXES[n]
  for i, p in enumerate(_puzzles(n, range(2))):
    t = sudoku_symmetry.sample(box, np.random.default_rng(i), 3)
    inputs, labels = apply(t, np.stack([p.input] * 3)), apply(t, np.stack([p.label] * 3))
    for x, y in zip(inputs, labels):
      assert valid_grid(y, n)
      assert (x != 0).sum() == (p.input != 0).sum()
      count, solution = count_solutions(x, n)
      assert count == 1 and (solution == y).all()


def test_explicit_transform_moves_bands_rows_stacks_columns_and_digits():
  box = sudoku.BOXES[6]
  grid = sudoku.generate(box, np.random.default_rng(0)).label
  rows, cols, digits = [4, 5, 1, 0, 2, 3], [3, 5, 4, 0, 1, 2], [2, 3, 1, 6, 5, 4]
  image = apply(sudoku_symmetry.transform(box, digits=digits, rows=rows, cols=cols), grid[None])[0].reshape(6, 6)
  expected = np.concatenate([[0], digits])[grid.reshape(6, 6)[rows][:, cols]]
  assert (image == expected).all()
  assert valid_grid(image, 6)
  square = sudoku.BOXES[9]
  full = sudoku.generate(square, np.random.default_rng(0)).label
  transposed = apply(sudoku_symmetry.transform(square, transpose=True), full[None])[0]
  assert (transposed.reshape(9, 9) == full.reshape(9, 9).T).all()


def test_transposition_refused_for_six_by_six_and_never_sampled():
  with pytest.raises(ValueError, match="only square boxes"):
    sudoku_symmetry.transform(sudoku.BOXES[6], transpose=True)
  cells = sudoku_symmetry.sample(sudoku.BOXES[6], np.random.default_rng(0), 200).cells.reshape(200, 6, 6)
  assert (np.ptp(cells // 6, axis=2) == 0).all()  # each row of an image comes from one row of the original
  square = sudoku_symmetry.sample(sudoku.BOXES[4], np.random.default_rng(0), 200).cells.reshape(200, 4, 4)
  assert 0 < (np.ptp(square // 4, axis=2) > 0).any(axis=1).sum() < 200  # transposed about half the time


def test_transform_refuses_moves_that_break_boxes():
  box = sudoku.BOXES[6]
  with pytest.raises(ValueError, match="keeping each group of 2 together"):
    sudoku_symmetry.transform(box, rows=[0, 2, 1, 3, 4, 5])  # rows 1 and 2 are in different bands
  with pytest.raises(ValueError, match="keeping each group of 3 together"):
    sudoku_symmetry.transform(box, cols=[0, 1, 3, 2, 4, 5])
  with pytest.raises(ValueError, match="must permute 1..6"):
    sudoku_symmetry.transform(box, digits=[1, 1, 2, 3, 4, 5])


def test_arrangements_count():
  assert len(sudoku_symmetry.arrangements(3, 3)) == 1296  # 3! * 3!^3
  assert len(sudoku_symmetry.arrangements(3, 2)) == 48  # 6x6 rows: 3! * 2!^3
  assert len(sudoku_symmetry.arrangements(2, 3)) == 72  # 6x6 columns: 2! * 3!^2


@pytest.mark.parametrize("n", [4, 6, 9])
def test_canonical_form_is_invariant(n):
  box = sudoku.BOXES[n]
  for p in _puzzles(n, range(3)):
    key = sudoku_symmetry.canonical(p.input, box)
    assert (key != 0).sum() == (p.input != 0).sum()
    images = apply(sudoku_symmetry.sample(box, np.random.default_rng(1), 6), np.stack([p.input] * 6))
    for image in images:
      assert (sudoku_symmetry.canonical(image, box) == key).all()


@pytest.mark.parametrize("n, seeds", [(4, range(12)), (6, range(2))])
def test_canonical_form_equals_the_smallest_of_the_whole_orbit(n, seeds):
  """Checked against enumerating every geometric symmetry: equal keys exactly for equivalent puzzles."""
  box = sudoku.BOXES[n]
  for p in _puzzles(n, seeds, min_clues=6 if n == 4 else 0):
    assert tuple(sudoku_symmetry.canonical(p.input, box)) == brute_canonical(p.input, n)


def test_canonical_form_tells_apart_puzzles_that_are_not_symmetries():
  box = sudoku.BOXES[4]
  puzzles = [p.input for p in _puzzles(4, range(30), min_clues=5)]
  for a in puzzles[:10]:
    orbit = {first_appearance(image) for image in geometric_images(a, 4)}
    for b in puzzles:
      same = (sudoku_symmetry.canonical(a, box) == sudoku_symmetry.canonical(b, box)).all()
      assert same == (first_appearance(b) in orbit)


def test_canonical_form_of_a_full_grid():
  box = sudoku.BOXES[4]
  grid = sudoku.generate(box, np.random.default_rng(0)).label
  assert tuple(sudoku_symmetry.canonical(grid, box, chunk=5)) == brute_canonical(grid, 4)
