"""What a puzzle set is: `PuzzleConfig` (which puzzles), `PuzzleSet` (one split's arrays) and `Splits`.

The types every kind of puzzle shares; `dataset.splits` makes Sudoku and
maze sets from them and `arc_sets.splits` ARC's. A field of `PuzzleConfig`
that only one kind reads must keep its default for the others.

>>> PuzzleConfig(kind="maze", size=4).kind
'maze'
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from contlearn.field_checks import FieldError, require
from contlearn.puzzles import arc, sudoku

KINDS = ("sudoku", "maze", "arc")
ONLY_FOR = {  # fields read by one kind only: another kind refuses a value other than the default
  "min_clues": "sudoku",
  "min_difficulty": "sudoku",
  "version": "arc",
  "augmentations": "arc",
  "tasks": "arc",
}
NOT_FOR_ARC = ("train", "test")  # an ARC set's size follows from its tasks and augmentations
ARC_SIDE = 30  # the largest ARC grid, the official canvas


@dataclasses.dataclass(frozen=True)
class PuzzleConfig:
  """Which puzzles to generate.

  A field that only one kind reads (`ONLY_FOR`) must keep its default for
  the other kinds, and ARC refuses `train` and `test` other than their
  defaults: its sets' sizes follow from its tasks and augmentations.

  Attributes:
    kind: "sudoku", "maze" or "arc".
    size: a Sudoku board's side (4, 6 or 9); a maze's cells per side (at
      least 2; its token grid is `2 * size + 1` tokens wide); ARC's canvas
      side (1 to 30; 30 holds every task, a smaller canvas only the tasks
      whose grids fit, so pass `size=30` for the official format).
    train: puzzles in the training split (Sudoku, maze).
    test: puzzles in the test split (Sudoku, maze).
    seed: which puzzles; the same seed gives the same sets. ARC: which
      augmentations and translations.
    min_clues: Sudoku only: clues each puzzle keeps at least (0: minimal
      puzzles, from which no clue can be removed).
    min_difficulty: Sudoku only: keep only puzzles whose difficulty
      (`sudoku.solve`'s nodes, `meta["difficulty"]`) is at least this (0: all).
    version: ARC only: "arc-agi-1" or "arc-agi-2".
    augmentations: ARC only: augmentations per task, the identity included
      (the official data has 1 + 1000; about 300 were found to suffice).
    tasks: ARC only: the first this many tasks (that fit the canvas) of the
      training tasks and of the evaluation tasks; 0: all.
  """

  kind: str = "sudoku"
  size: int = 6
  train: int = 1000
  test: int = 1000
  seed: int = 0
  min_clues: int = 0
  min_difficulty: int = 0
  version: str = "arc-agi-1"
  augmentations: int = 8
  tasks: int = 0

  def __post_init__(self):
    require(
      self,
      positive=("size", "train", "augmentations"),
      non_negative=("test", "seed", "min_clues", "min_difficulty", "tasks"),
      choices={"kind": KINDS, "version": tuple(arc.VERSIONS)},
    )
    owner = type(self).__name__
    if self.kind == "sudoku" and self.size not in sudoku.BOXES:
      raise FieldError(owner, "size", self.size, "one of 4, 6, 9 for a sudoku")
    if self.kind == "maze" and self.size < 2:
      raise FieldError(owner, "size", self.size, "an integer >= 2 for a maze")
    if self.kind == "arc" and self.size > ARC_SIDE:
      raise FieldError(owner, "size", self.size, f"an integer from 1 to {ARC_SIDE} for arc (the canvas side)")
    defaults = {f.name: f.default for f in dataclasses.fields(self)}
    for name, kind in ONLY_FOR.items():
      if self.kind != kind and getattr(self, name) != defaults[name]:
        raise FieldError(owner, name, getattr(self, name), f"{defaults[name]!r} for {self.kind} puzzles ({kind} only)")
    for name in NOT_FOR_ARC if self.kind == "arc" else ():
      if getattr(self, name) != defaults[name]:
        raise FieldError(
          owner,
          name,
          getattr(self, name),
          f"{defaults[name]} for arc (its sets' sizes follow from tasks and augmentations)",
        )


class PuzzleSet(NamedTuple):
  """The puzzles of one split.

  Attributes:
    config: the configuration that generated them (`puzzle_kind(config)`: shapes, symmetries).
    inputs: int32 `[P, L]`, the puzzles.
    labels: int32 `[P, L]`, their solutions.
    ids: int32 `[P]`, each puzzle's id, unique over both splits (training
      puzzles 0..train-1, test puzzles train..train+test-1); ARC: one per
      (task, augmentation), shared by a test puzzle and its task's
      demonstrations (`arc_sets`).
    meta: {name: int32 `[P]` or `[P, ...]`}: Sudoku "clues" and "difficulty"
      (`sudoku.solve`'s nodes), maze "path" (tokens on the path); ARC
      "task", "example", "dihedral", "colours" `[P, 10]`, "row", "col"
      (`arc_sets`).
  """

  config: PuzzleConfig
  inputs: np.ndarray
  labels: np.ndarray
  ids: np.ndarray
  meta: dict[str, np.ndarray]

  def __len__(self) -> int:
    return len(self.inputs)


class Splits(NamedTuple):
  """The training and test sets of one `PuzzleConfig`."""

  train: PuzzleSet
  test: PuzzleSet
