"""ARC grids on a square token canvas (HRM/TRM's 30x30 format): encode at a translation, decode by the EOS marks.

A grid `[H, W]` of colours 0..9 is written onto a `side x side` canvas
(`side` 30 holds every ARC grid) with its top-left cell at `(row, col)`:

| token | meaning |
|---|---|
| 0 (`PAD`) | outside the grid |
| 1 (`EOS`) | the row just below the grid and the column just right of it (where the canvas has room) |
| 2..11 | colours 0..9 |

The vocabulary is 12 and the canvas is flattened row by row to int32
`[side * side]`. The corner cell below-right of the grid stays PAD, as in the
official data. `decode` reads a grid back from `(row, col)`: its height and
width are the runs of colour tokens down column `col` and along row `row`,
every cell of that rectangle must be a colour, and the EOS marks must close
it on the bottom and on the right wherever the canvas has room. Tokens
farther away are not read (a model's output there, past the marks, does not
matter). A canvas that breaks a rule is malformed and decodes to None.
`decode(encode(g, side, row, col), side, row, col)` is g for every grid and
translation that fits.

>>> canvas = encode(np.array([[3, 0], [1, 9]]), side=4, row=1, col=0)
>>> canvas.reshape(4, 4)
array([[ 0,  0,  0,  0],
       [ 5,  2,  1,  0],
       [ 3, 11,  1,  0],
       [ 1,  1,  0,  0]], dtype=int32)
>>> decode(canvas, side=4, row=1, col=0)
array([[3, 0],
       [1, 9]], dtype=int32)
>>> print(decode(canvas, side=4))                     # nothing at (0, 0): malformed
None
"""

from __future__ import annotations

import numpy as np

PAD, EOS, FIRST_COLOUR = 0, 1, 2
VOCAB = 12  # PAD, EOS and the ten colours
SIDE = 30  # the official canvas: every ARC grid fits


def encode(grid: np.ndarray, side: int = SIDE, row: int = 0, col: int = 0) -> np.ndarray:
  """int32 `[side * side]`: `grid` (int `[H, W]`, colours 0..9) on the canvas with its top-left cell at (row, col)."""
  grid = np.asarray(grid)
  height, width = grid.shape
  if not (0 <= row <= side - height and 0 <= col <= side - width) or min(height, width) < 1:
    raise ValueError(f"a {height}x{width} grid at ({row}, {col}) does not fit a {side}x{side} canvas")
  if grid.min() < 0 or grid.max() > 9:
    raise ValueError(f"colours {grid.min()}..{grid.max()}: must be 0..9")
  canvas = np.full((side, side), PAD, np.int32)
  canvas[row : row + height, col : col + width] = grid + FIRST_COLOUR
  canvas[row + height : row + height + 1, col : col + width] = EOS  # empty when the grid touches the bottom
  canvas[row : row + height, col + width : col + width + 1] = EOS
  return canvas.ravel()


def _run(line: np.ndarray) -> int:
  """The number of colour tokens at the start of `line`."""
  stops = np.flatnonzero(line < FIRST_COLOUR)
  return int(stops[0]) if len(stops) else len(line)


def decode(canvas: np.ndarray, side: int = SIDE, row: int = 0, col: int = 0) -> np.ndarray | None:
  """int32 `[H, W]`: the grid whose top-left cell is at (row, col) of `canvas` (int `[side * side]`), or None.

  None when the canvas is malformed there (module docstring): no colour at
  (row, col), a token other than a colour (2..11) inside the rectangle, or
  a missing EOS mark.
  """
  board = np.asarray(canvas).reshape(side, side)
  height, width = _run(board[row:, col]), _run(board[row, col:])
  if height == 0 or width == 0:
    return None
  grid = board[row : row + height, col : col + width]
  below = board[row + height : row + height + 1, col : col + width]
  right = board[row : row + height, col + width : col + width + 1]
  if ((grid < FIRST_COLOUR) | (grid >= VOCAB)).any() or (below != EOS).any() or (right != EOS).any():
    return None
  return (grid - FIRST_COLOUR).astype(np.int32)
