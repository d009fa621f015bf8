"""Sudoku on 4x4, 6x6 and 9x9 boards: a solver, a generator of unique-solution puzzles, a difficulty.

A board of size N has boxes of `BOXES[N]` (rows x columns): 2x2 for 4x4, 2x3
for 6x6, 3x3 for 9x9. A grid is flattened row by row to `[N * N]` int32
tokens: **0 is a blank, 1..N are the digits** (vocabulary N + 1). A puzzle
is the input (clues and blanks), its unique solution the label.

`solve` is a bitmask backtracking search: one bitmask of used digits per
row, column and box; at each node it fills the blank with the fewest
candidates (the first such blank in its list on ties), trying digits in
increasing order, and counts solutions up to `limit`. `generate` fills an
empty board with digits tried in a random order (a random full grid, not
uniform over all grids), then blanks cells in a random order, putting a
digit back whenever the puzzle would lose its unique solution
(`solve(..., limit=2).count != 1`); with `min_clues=0` the result is minimal
(no clue can go). The augmentations and the canonical form are in
`contlearn.puzzles.sudoku_symmetry`.

**Difficulty** is `solve(puzzle).nodes`: the number of nodes (partial grids,
the root and the solution included) of the reference search's whole tree,
which for a unique puzzle it explores to the end to prove there is no second
solution. A puzzle that naked singles solve has `blanks + 1` nodes; every
guess that fails adds its subtree. It does not change when the digits are
relabelled, but may when rows or columns move (ties are broken by position).

>>> box = BOXES[4]
>>> rng = np.random.default_rng(0)
>>> puzzle = generate(box, rng)
>>> puzzle.input.reshape(4, 4)
array([[0, 0, 0, 0],
       [0, 1, 0, 0],
       [0, 3, 0, 1],
       [0, 0, 4, 0]], dtype=int32)
>>> puzzle.label.reshape(4, 4)
array([[3, 4, 1, 2],
       [2, 1, 3, 4],
       [4, 3, 2, 1],
       [1, 2, 4, 3]], dtype=int32)
>>> found = solve(puzzle.input, box)
>>> found.count, bool((found.grid == puzzle.label).all())
(1, True)
>>> puzzle.clues, puzzle.difficulty                  # 12 blanks filled by naked singles: 12 + 1 nodes
(4, 13)
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np


class Box(NamedTuple):
  """The shape of a box: `rows` x `cols`; the board is `size` x `size`, `size = rows * cols`."""

  rows: int
  cols: int

  @property
  def size(self) -> int:
    return self.rows * self.cols


BOXES = {4: Box(2, 2), 6: Box(2, 3), 9: Box(3, 3)}


class Solution(NamedTuple):
  """What `solve` found.

  Attributes:
    count: solutions found, at most `limit`.
    nodes: nodes of the search (module docstring); 0 when clues clash.
    grid: int32 `[N * N]`, the first solution found; None without one.
  """

  count: int
  nodes: int
  grid: np.ndarray | None


class Sudoku(NamedTuple):
  """A generated puzzle: `input` (clues, 0 = blank) and `label` (its unique solution), int32 `[N * N]`."""

  input: np.ndarray
  label: np.ndarray
  difficulty: int

  @property
  def clues(self) -> int:
    return int(np.count_nonzero(self.input))


@functools.cache
def _units(box: Box) -> tuple[list[int], list[int], list[int]]:
  """The row, column and box of every cell, in row-major order."""
  n = box.size
  rows = [cell // n for cell in range(n * n)]
  cols = [cell % n for cell in range(n * n)]
  boxes = [(r // box.rows) * (n // box.cols) + c // box.cols for r, c in zip(rows, cols)]
  return rows, cols, boxes


def solve(puzzle: np.ndarray, box: Box, limit: int = 2, rng: np.random.Generator | None = None) -> Solution:
  """Searches `puzzle` (int `[N * N]`, 0 = blank) for up to `limit` solutions.

  With `rng` the digits of each node are tried in a random order instead of
  increasing (a random solution, as `generate` fills a board).
  """
  n = box.size
  grid = [int(v) for v in np.asarray(puzzle).ravel()]
  if len(grid) != n * n or not all(0 <= d <= n for d in grid):
    raise ValueError(f"a {n}x{n} puzzle is {n * n} tokens in 0..{n}")
  row_of, col_of, box_of = _units(box)
  full = (1 << n) - 1
  rows, cols, boxes = [0] * n, [0] * n, [0] * n
  empties = []
  for cell, d in enumerate(grid):
    if d == 0:
      empties.append(cell)
      continue
    bit = 1 << (d - 1)
    r, c, b = row_of[cell], col_of[cell], box_of[cell]
    if (rows[r] | cols[c] | boxes[b]) & bit:
      return Solution(0, 0, None)
    rows[r] |= bit
    cols[c] |= bit
    boxes[b] |= bit
  count = nodes = 0
  first = None

  def search(depth: int) -> None:
    nonlocal count, nodes, first
    nodes += 1
    if depth == len(empties):
      count += 1
      if first is None:
        first = np.array(grid, np.int32)
      return
    best, best_cand, best_k = depth, 0, n + 1
    for i in range(depth, len(empties)):
      cell = empties[i]
      cand = full & ~(rows[row_of[cell]] | cols[col_of[cell]] | boxes[box_of[cell]])
      k = cand.bit_count()
      if k < best_k:
        best, best_cand, best_k = i, cand, k
        if k <= 1:
          break
    if best_k == 0:
      return
    empties[depth], empties[best] = empties[best], empties[depth]
    cell = empties[depth]
    r, c, b = row_of[cell], col_of[cell], box_of[cell]
    digits = [d for d in range(1, n + 1) if best_cand >> (d - 1) & 1]
    if rng is not None:
      digits = [digits[i] for i in rng.permutation(len(digits))]
    for d in digits:
      bit = 1 << (d - 1)
      rows[r] |= bit
      cols[c] |= bit
      boxes[b] |= bit
      grid[cell] = d
      search(depth + 1)
      rows[r] ^= bit
      cols[c] ^= bit
      boxes[b] ^= bit
      grid[cell] = 0
      if count >= limit:
        break
    empties[depth], empties[best] = empties[best], empties[depth]

  search(0)
  return Solution(count, nodes, first)


def generate(box: Box, rng: np.random.Generator, min_clues: int = 0) -> Sudoku:
  """A random puzzle with a unique solution and at least `min_clues` clues (0: minimal); module docstring."""
  n = box.size
  solution = solve(np.zeros(n * n, np.int32), box, limit=1, rng=rng).grid
  puzzle = solution.copy()
  clues = n * n
  for cell in rng.permutation(n * n):
    if clues <= min_clues:
      break
    digit, puzzle[cell] = puzzle[cell], 0
    if solve(puzzle, box).count == 1:
      clues -= 1
    else:
      puzzle[cell] = digit
  return Sudoku(puzzle, solution, solve(puzzle, box).nodes)
