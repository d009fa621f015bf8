"""Sudoku generator and solver, checked by an independent solver written from the rules."""

import numpy as np
import pytest

from contlearn.puzzles import sudoku
from tests.puzzles.checks import count_solutions, valid_grid

SEEDS = {4: range(8), 6: range(5), 9: range(3)}


@pytest.mark.parametrize("n", [4, 6, 9])
def test_generated_puzzles_have_exactly_one_solution_the_label(n):
  for seed in SEEDS[n]:
    puzzle = sudoku.generate(sudoku.BOXES[n], np.random.default_rng(seed))
    assert puzzle.input.shape == puzzle.label.shape == (n * n,)
    assert puzzle.input.dtype == puzzle.label.dtype == np.int32
    assert valid_grid(puzzle.label, n)
    clues = puzzle.input != 0
    assert (puzzle.input[clues] == puzzle.label[clues]).all()
    count, solution = count_solutions(puzzle.input, n)
    assert count == 1, (n, seed)
    assert (solution == puzzle.label).all()


@pytest.mark.parametrize("n", [4, 6])
def test_min_clues_zero_gives_minimal_puzzles(n):
  """No clue of a minimal puzzle can go without a second solution appearing."""
  for seed in SEEDS[n]:
    puzzle = sudoku.generate(sudoku.BOXES[n], np.random.default_rng(seed)).input
    for cell in np.flatnonzero(puzzle):
      fewer = puzzle.copy()
      fewer[cell] = 0
      assert count_solutions(fewer, n)[0] == 2


def test_min_clues_keeps_at_least_that_many():
  box = sudoku.BOXES[6]
  for seed in range(3):
    puzzle = sudoku.generate(box, np.random.default_rng(seed), min_clues=20)
    assert puzzle.clues == 20
    assert count_solutions(puzzle.input, 6)[0] == 1


def test_generation_is_deterministic_given_a_seed():
  box = sudoku.BOXES[9]
  a, b = (sudoku.generate(box, np.random.default_rng(7)) for _ in range(2))
  assert (a.input == b.input).all() and (a.label == b.label).all() and a.difficulty == b.difficulty
  c = sudoku.generate(box, np.random.default_rng(8))
  assert not (a.label == c.label).all()


def test_solver_counts_all_288_four_by_four_grids():
  found = sudoku.solve(np.zeros(16, np.int32), sudoku.BOXES[4], limit=1000)
  assert found.count == 288  # the number of 4x4 Sudoku grids
  assert valid_grid(found.grid, 4)


def test_solver_limits_clashes_and_bad_tokens():
  box = sudoku.BOXES[4]
  assert sudoku.solve(np.zeros(16, np.int32), box, limit=2).count == 2
  clash = np.zeros(16, np.int32)
  clash[[0, 5]] = 3  # the same digit twice in the first box
  assert sudoku.solve(clash, box) == (0, 0, None)
  with pytest.raises(ValueError, match="16 tokens in 0..4"):
    sudoku.solve(np.full(16, 5), box)


def test_difficulty_counts_nodes_and_ignores_relabelling():
  box = sudoku.BOXES[9]
  rng = np.random.default_rng(0)
  puzzles = [sudoku.generate(box, np.random.default_rng(s)) for s in range(3)]
  for p in puzzles:
    blanks = int((p.input == 0).sum())
    assert p.difficulty >= blanks + 1  # at least one node per blank and the root
    relabel = np.concatenate([[0], rng.permutation(9) + 1])
    assert sudoku.solve(relabel[p.input], box).nodes == p.difficulty
  assert max(p.difficulty - int((p.input == 0).sum()) - 1 for p in puzzles) > 0  # some need guesses


def test_solved_by_singles_has_blanks_plus_one_nodes():
  box = sudoku.BOXES[9]
  solution = sudoku.generate(box, np.random.default_rng(1)).label
  puzzle = solution.copy()
  puzzle[[0, 10, 20, 40, 80]] = 0  # each blank alone in its row: one candidate each
  assert sudoku.solve(puzzle, box).nodes == 6
