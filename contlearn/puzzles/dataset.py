"""Puzzle sets: generated puzzles as token arrays, split into train and test, no puzzle a symmetry of another.

`splits(config)` draws puzzles of one kind and size (puzzle i from the
generator `np.random.default_rng([seed, i])`, so a seed always gives the same
sets), keeps a puzzle only if its canonical form under the kind's symmetries
(`sudoku_symmetry.canonical`; for mazes `maze.canonical`) is new, and puts
the first `train` kept into the training split and the next `test` into the
test split.

**Guarantee.** No two puzzles of the two splits together are symmetries of
each other: no test puzzle is an augmentation (any symmetry the feed may
apply) of a training puzzle, nor a duplicate of another test puzzle. It is
about puzzles (clues and blanks), not solutions: for Sudoku two puzzles of
different splits may have the same solution grid up to symmetry, which
small boards cannot avoid (up to symmetry a 4x4 board has 2 solution grids,
a 6x6 board 49; minimal 4x4 puzzles number a few dozen, so ask `min_clues`
for more).

>>> train, test = splits(PuzzleConfig(kind="sudoku", size=4, train=3, test=2, min_clues=6))
>>> train.inputs.shape, train.labels.dtype, test.ids
((3, 16), dtype('int32'), array([3, 4], dtype=int32))
>>> sorted(train.meta), int(train.meta["clues"].min())
(['clues', 'difficulty'], 6)
>>> kind = puzzle_kind(train.config)
>>> kind.length, kind.vocab
(16, 5)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from contlearn.config import FieldError, require
from contlearn.errors import ConfigError
from contlearn.puzzles import maze, sudoku, sudoku_symmetry
from contlearn.puzzles.transforms import Transforms

KINDS = ("sudoku", "maze")
DRAWS_PER_PUZZLE = 10  # draws allowed per puzzle asked (plus 100) before giving up on finding new ones


@dataclasses.dataclass(frozen=True)
class PuzzleConfig:
  """Which puzzles to generate.

  Attributes:
    kind: "sudoku" or "maze".
    size: a Sudoku board's side (4, 6 or 9); a maze's cells per side (at
      least 2; its token grid is `2 * size + 1` tokens wide).
    train: puzzles in the training split.
    test: puzzles in the test split.
    seed: which puzzles; the same seed gives the same sets.
    min_clues: Sudoku only: clues each puzzle keeps at least (0: minimal
      puzzles, from which no clue can be removed).
  """

  kind: str = "sudoku"
  size: int = 6
  train: int = 1000
  test: int = 1000
  seed: int = 0
  min_clues: int = 0

  def __post_init__(self):
    require(self, positive=("size", "train"), non_negative=("test", "seed", "min_clues"), choices={"kind": KINDS})
    owner = type(self).__name__
    if self.kind == "sudoku" and self.size not in sudoku.BOXES:
      raise FieldError(owner, "size", self.size, "one of 4, 6, 9 for a sudoku")
    if self.kind == "maze" and self.size < 2:
      raise FieldError(owner, "size", self.size, "an integer >= 2 for a maze")


class Generated(NamedTuple):
  """One generated puzzle: `input` and `label` int32 `[L]`, and `meta` ({name: int})."""

  input: np.ndarray
  label: np.ndarray
  meta: dict[str, int]


class PuzzleKind(NamedTuple):
  """A kind of puzzle at one size: its token shapes, its generator and its symmetries.

  Attributes:
    length: L, tokens of a flattened puzzle.
    vocab: V, token ids 0..V-1.
    generate: `generate(rng) -> Generated`.
    key: `key(input [L]) -> bytes`, the canonical form of a puzzle under its symmetries.
    sample: `sample(rng, n) -> Transforms`, n symmetries drawn uniformly.
  """

  length: int
  vocab: int
  generate: Callable[[np.random.Generator], Generated]
  key: Callable[[np.ndarray], bytes]
  sample: Callable[[np.random.Generator, int], Transforms]


def puzzle_kind(config: PuzzleConfig) -> PuzzleKind:
  """The `PuzzleKind` of `config`: Sudoku tokens 0 (blank) and 1..N (`sudoku`), maze tokens of `maze`."""
  if config.kind == "sudoku":
    box = sudoku.BOXES[config.size]

    def generate_sudoku(rng):
      s = sudoku.generate(box, rng, config.min_clues)
      return Generated(s.input, s.label, {"clues": s.clues, "difficulty": s.difficulty})

    key = lambda x: sudoku_symmetry.canonical(x, box).tobytes()
    return PuzzleKind(box.size**2, box.size + 1, generate_sudoku, key, functools.partial(sudoku_symmetry.sample, box))
  side = 2 * config.size + 1

  def generate_maze(rng):
    m = maze.generate(config.size, config.size, rng)
    return Generated(m.input.ravel(), m.label.ravel(), {"path": m.path})

  key = lambda x: maze.canonical(np.asarray(x).reshape(side, side)).tobytes()
  return PuzzleKind(side * side, maze.VOCAB, generate_maze, key, functools.partial(maze.sample, side))


class PuzzleSet(NamedTuple):
  """The puzzles of one split.

  Attributes:
    config: the configuration that generated them (`puzzle_kind(config)`: shapes, symmetries).
    inputs: int32 `[P, L]`, the puzzles.
    labels: int32 `[P, L]`, their solutions.
    ids: int32 `[P]`, each puzzle's id, unique over both splits (training
      puzzles 0..train-1, test puzzles train..train+test-1).
    meta: {name: int32 `[P]`}: Sudoku "clues" and "difficulty"
      (`sudoku.solve`'s nodes), maze "path" (tokens on the path).
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


def _puzzle_set(config: PuzzleConfig, puzzles: list[Generated], first_id: int, names: tuple[str, ...]) -> PuzzleSet:
  kind = puzzle_kind(config)
  stack = lambda rows: np.array(rows, np.int32).reshape(len(puzzles), kind.length)
  meta = {name: np.array([p.meta[name] for p in puzzles], np.int32) for name in names}
  ids = np.arange(first_id, first_id + len(puzzles), dtype=np.int32)
  return PuzzleSet(config, stack([p.input for p in puzzles]), stack([p.label for p in puzzles]), ids, meta)


def splits(config: PuzzleConfig) -> Splits:
  """The training and test puzzles of `config`, no two of them symmetries of each other (module docstring)."""
  kind = puzzle_kind(config)
  wanted = config.train + config.test
  draws = DRAWS_PER_PUZZLE * wanted + 100
  seen, kept = set(), []
  for draw in range(draws):
    puzzle = kind.generate(np.random.default_rng([config.seed, draw]))
    key = kind.key(puzzle.input)
    if key not in seen:
      seen.add(key)
      kept.append(puzzle)
      if len(kept) == wanted:
        break
  else:
    raise ConfigError(
      f"{config.kind} of size {config.size}: only {len(kept)} puzzles distinct up to symmetry in {draws} draws, "
      f"{wanted} asked; ask for fewer" + (" or raise min_clues" if config.kind == "sudoku" else " or a larger size")
    )
  names = tuple(kept[0].meta)
  return Splits(
    _puzzle_set(config, kept[: config.train], 0, names),
    _puzzle_set(config, kept[config.train :], config.train, names),
  )
