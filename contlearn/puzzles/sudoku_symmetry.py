"""The symmetries of Sudoku: validity-preserving augmentations and a canonical form under them.

A symmetry of an N x N board with boxes `box` (`contlearn.puzzles.sudoku`)
combines:

- a relabelling of the digits 1..N (the blank, 0, stays 0);
- a permutation of the rows that keeps bands together: the bands (groups of
  `box.rows` rows) in any order, the rows within each band in any order;
- the same for columns and stacks (groups of `box.cols` columns);
- a transposition, only for square boxes (4x4, 9x9): it would turn the 2x3
  boxes of a 6x6 board into 3x2 ones, so `transform` refuses it there and
  `sample` never draws it.

Each maps a valid grid to a valid grid and a puzzle's unique solution to the
unique solution of its image, so a puzzle and its label are augmented
together. Cell `[r, c]` of the image is cell `[rows[r], cols[c]]` of the
original (then the whole grid is transposed if asked), digit d becomes
`digits[d - 1]`.

`canonical(puzzle, box)` is the smallest grid of the puzzle's orbit under
all of them, in the order: first the clue pattern (blank or not, row by row),
then the digits, relabelled in order of first appearance. Two puzzles have
the same canonical form exactly when one is a symmetry of the other. It is
found without visiting the whole group (3,359,232 geometric symmetries for
9x9): for each column arrangement (and transposition) the best row
arrangement of the clue pattern is a sort (the rows within each band, then
the bands), and only the arrangements that reach the smallest pattern have
their digits compared. Its cost grows with the number of symmetries that fix
the clue pattern: a few for generated puzzles; a full grid fixes all of them.

>>> from contlearn.puzzles.sudoku import BOXES
>>> from contlearn.puzzles.transforms import apply
>>> box = BOXES[4]
>>> grid = np.array([1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1])
>>> swap = transform(box, digits=[2, 1, 3, 4], rows=[1, 0, 2, 3])
>>> apply(swap, grid[None]).reshape(4, 4)
array([[3, 4, 2, 1],
       [2, 1, 3, 4],
       [1, 2, 4, 3],
       [4, 3, 1, 2]], dtype=int32)
>>> transform(BOXES[6], transpose=True)
Traceback (most recent call last):
...
ValueError: transposition maps 2x3 boxes to 3x2 boxes: only square boxes allow it
>>> puzzle = np.array([0, 0, 0, 0, 0, 0, 0, 1, 3, 0, 2, 0, 0, 0, 0, 4])
>>> moved = apply(sample(box, np.random.default_rng(0), 1), puzzle[None])[0]
>>> bool((canonical(moved, box) == canonical(puzzle, box)).all())
True
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np

from contlearn.puzzles.sudoku import Box
from contlearn.puzzles.transforms import Transforms


@functools.cache
def arrangements(groups: int, size: int) -> np.ndarray:
  """int32 `[groups! * size!**groups, groups * size]`: every permutation of `groups * size` lines that keeps each
  group of `size` consecutive lines together (the row arrangements of a board with `groups` bands of `size` rows)."""
  lines = []
  for order in itertools.permutations(range(groups)):
    for within in itertools.product(itertools.permutations(range(size)), repeat=groups):
      lines.append([g * size + w for g, ws in zip(order, within) for w in ws])
  return np.array(lines, np.int32)


def _cells(box: Box, rows: np.ndarray, cols: np.ndarray, transpose: np.ndarray) -> np.ndarray:
  """int32 `[n, N * N]` cell tables of n symmetries from rows, cols `[n, N]` and transpose `[n]` bool."""
  n = box.size
  cells = rows[:, :, None] * n + cols[:, None, :]
  cells = np.where(transpose[:, None, None], cells.transpose(0, 2, 1), cells)
  return cells.reshape(len(rows), n * n).astype(np.int32)


def _tokens(digits: np.ndarray) -> np.ndarray:
  """int32 `[n, N + 1]` token tables from digit relabellings `[n, N]` (the blank stays 0)."""
  return np.concatenate([np.zeros((len(digits), 1), np.int32), digits], axis=1).astype(np.int32)


def _check_lines(name: str, lines: np.ndarray, size: int, group: int) -> None:
  """`lines` must permute 0..size-1 keeping each group of `group` consecutive lines together."""
  ok = sorted(lines.tolist()) == list(range(size))
  ok = ok and all(len(set((lines[i : i + group] // group).tolist())) == 1 for i in range(0, size, group))
  if not ok:
    raise ValueError(f"{name}={lines.tolist()}: must permute 0..{size - 1} keeping each group of {group} together")


def transform(
  box: Box,
  *,
  digits: Sequence[int] | None = None,
  rows: Sequence[int] | None = None,
  cols: Sequence[int] | None = None,
  transpose: bool = False,
) -> Transforms:
  """One symmetry (n = 1), each part checked; None leaves that part as it is.

  Args:
    digits: `[N]`, digit d becomes `digits[d - 1]`; a permutation of 1..N.
    rows: `[N]`, row r of the image is row `rows[r]`; keeps bands together.
    cols: `[N]`, the same for columns and stacks.
    transpose: transpose the board last; square boxes only.
  """
  n = box.size
  digits = np.arange(1, n + 1) if digits is None else np.asarray(digits)
  rows = np.arange(n) if rows is None else np.asarray(rows)
  cols = np.arange(n) if cols is None else np.asarray(cols)
  if sorted(digits.tolist()) != list(range(1, n + 1)):
    raise ValueError(f"digits={digits.tolist()}: must permute 1..{n}")
  _check_lines("rows", rows, n, box.rows)
  _check_lines("cols", cols, n, box.cols)
  if transpose and box.rows != box.cols:
    raise ValueError(
      f"transposition maps {box.rows}x{box.cols} boxes to {box.cols}x{box.rows} boxes: only square boxes allow it"
    )
  return Transforms(_cells(box, rows[None], cols[None], np.array([transpose])), _tokens(digits[None]))


def _lines(rng: np.random.Generator, n: int, groups: int, size: int) -> np.ndarray:
  """int `[n, groups * size]`: n random line arrangements keeping groups together."""
  order = rng.permuted(np.tile(np.arange(groups), (n, 1)), axis=1)
  within = rng.permuted(np.tile(np.arange(size), (n, groups, 1)), axis=2)
  return (order[:, :, None] * size + within).reshape(n, groups * size)


def sample(box: Box, rng: np.random.Generator, n: int) -> Transforms:
  """n symmetries drawn uniformly from the group (transposed half the time for square boxes)."""
  size = box.size
  digits = rng.permuted(np.tile(np.arange(1, size + 1), (n, 1)), axis=1)
  rows = _lines(rng, n, size // box.rows, box.rows)
  cols = _lines(rng, n, size // box.cols, box.cols)
  transpose = rng.random(n) < 0.5 if box.rows == box.cols else np.zeros(n, bool)
  return Transforms(_cells(box, rows, cols, transpose), _tokens(digits))


def _relabel(grids: np.ndarray, n: int) -> np.ndarray:
  """`grids` `[K, L]` with digits renamed 1, 2, ... in order of first appearance in each row (0 stays)."""
  present = grids[:, :, None] == np.arange(1, n + 1)
  first = np.where(present.any(axis=1), present.argmax(axis=1), grids.shape[1])
  rank = np.argsort(np.argsort(first, axis=1, kind="stable"), axis=1) + 1
  return np.take_along_axis(_tokens(rank), grids, axis=1)


def _smallest(grids: np.ndarray) -> np.ndarray:
  """The lexicographically smallest row of `grids` `[K, L]`."""
  return grids[np.lexsort(grids.T[::-1])[0]]


def canonical(puzzle: np.ndarray, box: Box, chunk: int = 64) -> np.ndarray:
  """int8 `[N * N]`: the canonical form of `puzzle` (int `[N * N]`, 0 = blank) under the group (module docstring).

  `chunk` bounds the memory of the digit comparison: the column arrangements
  that reach the smallest clue pattern are taken `chunk` at a time.
  """
  n = box.size
  grid = np.asarray(puzzle).reshape(n, n)
  bases = np.stack([grid, grid.T]) if box.rows == box.cols else grid[None]
  row_lines = arrangements(n // box.rows, box.rows)
  col_lines = arrangements(n // box.cols, box.cols)
  # Clue pattern of each row as an n-bit number (first column most significant), per base and column arrangement.
  bits = (bases != 0)[:, :, col_lines].astype(np.int64) @ (1 << np.arange(n - 1, -1, -1))  # [bases, n, C]
  values = bits.transpose(0, 2, 1).reshape(-1, n)  # [bases * C, n]
  # The best row arrangement of each: rows sorted within bands, then bands sorted (a band as one number).
  bands = np.sort(values.reshape(len(values), n // box.rows, box.rows), axis=-1)
  band_numbers = np.sort(bands @ (1 << (n * np.arange(box.rows - 1, -1, -1))), axis=-1)
  best = _smallest(band_numbers)
  target = ((best[:, None] >> (n * np.arange(box.rows - 1, -1, -1))) & ((1 << n) - 1)).ravel()  # row values [n]
  kept = np.flatnonzero((band_numbers == best).all(axis=1))
  flat = bases.reshape(len(bases), n * n)
  smallest = None
  for part in np.array_split(kept, math.ceil(len(kept) / chunk)):
    which, row_choice = np.nonzero((values[part][:, row_lines] == target).all(axis=-1))
    base, col_choice = np.divmod(part[which], len(col_lines))
    cells = (row_lines[row_choice][:, :, None] * n + col_lines[col_choice][:, None, :]).reshape(len(base), n * n)
    candidate = _smallest(_relabel(flat[base[:, None], cells], n)).astype(np.int8)
    if smallest is None or candidate.tobytes() < smallest.tobytes():  # int8 in 0..9: bytes order is lexicographic
      smallest = candidate
  return smallest
