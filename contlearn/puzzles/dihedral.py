"""The eight symmetries of a square (the dihedral group D4) on grids, numbered as in HRM and TRM.

| id | transform | inverse |
|---|---|---|
| 0 | identity | 0 |
| 1 | rotate 90 degrees counter-clockwise (`np.rot90`) | 3 |
| 2 | rotate 180 degrees | 2 |
| 3 | rotate 270 degrees | 1 |
| 4 | flip left-right | 4 |
| 5 | flip up-down | 5 |
| 6 | transpose | 6 |
| 7 | anti-transpose (flip left-right after rotating 90 degrees) | 7 |

Each acts on the last two axes of an array of any leading shape, and on any
`[H, W]` (a rotation by 90 degrees or a (anti-)transposition gives `[W, H]`).

>>> grid = np.array([[1, 2], [3, 4]])
>>> transform(grid, 1)
array([[2, 4],
       [1, 3]])
>>> all((invert(transform(grid, k), k) == grid).all() for k in range(8))
True
>>> cell_permutation(2, 2, 1)           # transform(g, 1).ravel() == g.ravel()[cell_permutation(2, 2, 1)]
array([1, 3, 0, 2], dtype=int32)
"""

from __future__ import annotations

import numpy as np

COUNT = 8
INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)
AXES = (-2, -1)


def transform(grid: np.ndarray, k: int) -> np.ndarray:
  """Symmetry `k` (0..7, module table) of `grid` `[..., H, W]`."""
  if k == 0:
    return grid
  if k in (1, 2, 3):
    return np.rot90(grid, k, axes=AXES)
  if k == 4:
    return np.flip(grid, -1)
  if k == 5:
    return np.flip(grid, -2)
  if k == 6:
    return np.swapaxes(grid, -2, -1)
  if k == 7:
    return np.flip(np.rot90(grid, 1, axes=AXES), -1)
  raise ValueError(f"dihedral transform {k}: must be one of 0..7")


def invert(grid: np.ndarray, k: int) -> np.ndarray:
  """The grid `g` with `transform(g, k) == grid`."""
  return transform(grid, INVERSE[k])


def cell_permutation(height: int, width: int, k: int) -> np.ndarray:
  """int32 `[height * width]`: `transform(g, k).ravel() == g.ravel()[perm]` for every `[height, width]` grid g."""
  return np.ascontiguousarray(transform(np.arange(height * width, dtype=np.int32).reshape(height, width), k)).ravel()
