"""Puzzle sets: generated puzzles as token arrays, split into train and test, no puzzle a symmetry of another.

`splits(config)` draws puzzles of one kind and size (puzzle i from the
generator `np.random.default_rng([seed, i])`, so a seed always gives the same
sets), keeps a puzzle only if its canonical form under the kind's symmetries
(`sudoku_symmetry.canonical`; for mazes `maze.canonical`) is new, and puts
the first `train` kept into the training split and the next `test` into the
test split. With `min_difficulty`, a Sudoku is kept only if its difficulty
(`sudoku.solve`'s nodes) is at least that.

ARC (`kind="arc"`) is not drawn one by one: its sets are every demonstration
pair of the ARC tasks under augmentations baked into the sets and the ids
(`contlearn.puzzles.arc_sets`, on a canvas of `size` a side).

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

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from contlearn.errors import ConfigError
from contlearn.puzzles import arc_canvas, arc_sets, maze, sudoku, sudoku_symmetry
from contlearn.puzzles.puzzle_set import PuzzleConfig, PuzzleSet, Splits
from contlearn.puzzles.transforms import Transforms

DRAWS_PER_PUZZLE = 10  # draws allowed per puzzle asked (plus 100) before giving up on finding new ones
FILTERED_DRAWS_PER_PUZZLE = 100  # the same with a difficulty filter, which rejects most draws


class Generated(NamedTuple):
  """One generated puzzle: `input` and `label` int32 `[L]`, and `meta` ({name: int})."""

  input: np.ndarray
  label: np.ndarray
  meta: dict[str, int]


class PuzzleKind(NamedTuple):
  """A kind of puzzle at one size: its token shapes, its generator and its symmetries.

  ARC has only `length` and `vocab` (the others are None): its puzzles are
  not drawn one by one, and its augmentations are baked into its sets
  (`arc_sets`).

  Attributes:
    length: L, tokens of a flattened puzzle.
    vocab: V, token ids 0..V-1.
    generate: `generate(rng) -> Generated`.
    key: `key(input [L]) -> bytes`, the canonical form of a puzzle under its symmetries.
    sample: `sample(rng, n) -> Transforms`, n symmetries drawn uniformly.
  """

  length: int
  vocab: int
  generate: Callable[[np.random.Generator], Generated] | None
  key: Callable[[np.ndarray], bytes] | None
  sample: Callable[[np.random.Generator, int], Transforms] | None


def puzzle_kind(config: PuzzleConfig) -> PuzzleKind:
  """The `PuzzleKind` of `config`: Sudoku tokens 0 (blank) and 1..N (`sudoku`), maze tokens of `maze`, ARC's canvas.

  ARC's tokens are those of `arc_canvas` (PAD, EOS, colours), L = size^2.
  """
  if config.kind == "arc":
    return PuzzleKind(config.size**2, arc_canvas.VOCAB, None, None, None)
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


def _puzzle_set(config: PuzzleConfig, puzzles: list[Generated], first_id: int, names: tuple[str, ...]) -> PuzzleSet:
  kind = puzzle_kind(config)
  stack = lambda rows: np.array(rows, np.int32).reshape(len(puzzles), kind.length)
  meta = {name: np.array([p.meta[name] for p in puzzles], np.int32) for name in names}
  ids = np.arange(first_id, first_id + len(puzzles), dtype=np.int32)
  return PuzzleSet(config, stack([p.input for p in puzzles]), stack([p.label for p in puzzles]), ids, meta)


def splits(config: PuzzleConfig) -> Splits:
  """The training and test puzzles of `config`, no two of them symmetries of each other (module docstring).

  ARC: `arc_sets.splits(config)`.
  """
  if config.kind == "arc":
    return arc_sets.splits(config)
  kind = puzzle_kind(config)
  wanted = config.train + config.test
  draws = (FILTERED_DRAWS_PER_PUZZLE if config.min_difficulty else DRAWS_PER_PUZZLE) * wanted + 100
  seen, kept = set(), []
  for draw in range(draws):
    puzzle = kind.generate(np.random.default_rng([config.seed, draw]))
    if config.min_difficulty and puzzle.meta["difficulty"] < config.min_difficulty:
      continue
    key = kind.key(puzzle.input)
    if key not in seen:
      seen.add(key)
      kept.append(puzzle)
      if len(kept) == wanted:
        break
  else:
    hard = f" with difficulty >= {config.min_difficulty}" if config.min_difficulty else ""
    remedy = {"maze": "a larger size", "sudoku": "lower min_difficulty" if hard else "raise min_clues"}[config.kind]
    raise ConfigError(
      f"{config.kind} of size {config.size}: only {len(kept)} puzzles distinct up to symmetry{hard} in {draws} "
      f"draws, {wanted} asked; ask for fewer or {remedy}"
    )
  names = tuple(kept[0].meta)
  return Splits(
    _puzzle_set(config, kept[: config.train], 0, names),
    _puzzle_set(config, kept[config.train :], config.train, names),
  )
