"""A batch of puzzle symmetries, each a permutation of the cells and a map of the tokens.

Every augmentation of the generated puzzles moves cells (a Sudoku's row and
column permutations and transposition, a maze's rotations and reflections)
and renames tokens (a Sudoku's digit relabelling), so n of them are two
integer tables and applying them to n flattened grids is two gathers:
`out[i, j] = tokens[i, grids[i, cells[i, j]]]`.

>>> t = Transforms(cells=np.array([[1, 0, 2]], np.int32), tokens=np.array([[0, 2, 1]], np.int32))
>>> apply(t, np.array([[1, 2, 0]]))
array([[1, 2, 0]], dtype=int32)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Transforms(NamedTuple):
  """n symmetries of flattened grids of L cells over a vocabulary of V tokens.

  Attributes:
    cells: int32 `[n, L]`; cell j of a transformed grid is cell `cells[i, j]` of the original.
    tokens: int32 `[n, V]`; token t becomes `tokens[i, t]`.
  """

  cells: np.ndarray
  tokens: np.ndarray


def apply(transforms: Transforms, grids: np.ndarray) -> np.ndarray:
  """int32 `[n, L]`: each grid of `grids` `[n, L]` under its transform (vectorised over the batch)."""
  moved = np.take_along_axis(np.asarray(grids), transforms.cells, axis=1)
  return np.take_along_axis(transforms.tokens, moved, axis=1).astype(np.int32)
