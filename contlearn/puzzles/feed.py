"""A resumable feed of puzzle blocks for the host loop (a `contlearn.loop.Feed`).

The puzzles of a set are read in epochs, each a shuffle of the whole set
(epoch e in the order `default_rng([seed, 0, e]).permutation(P)`), one
after another without end; block k holds the next `steps * batch` of them,
`[steps, batch, L]`. With `augment`, each puzzle of block k gets its own
symmetry of its kind (`PuzzleKind.sample`, drawn from
`default_rng([seed, 1, k])`), applied to the input and the label together;
ids stay the original puzzle's. So the block at a position is a pure
function of (set, seed, position): the position is the number of blocks
read (an int, JSON), saved with each checkpoint, and a resumed run reads
exactly the blocks an uninterrupted one would.

ARC sets refuse `augment`: their augmentations are baked into the set, each
(task, augmentation) with its own id and puzzle embedding, and a test
puzzle's prediction is mapped back by its own augmentation (`arc_sets`,
`arc_vote`). A symmetry drawn here would bypass both, so an ARC feed is
made with `augment=False`.

>>> from contlearn.puzzles.dataset import PuzzleConfig, splits
>>> train, _ = splits(PuzzleConfig(kind="maze", size=2, train=4, test=0))
>>> feed = PuzzleFeed(train, steps=3, batch=2, seed=0, blocks=2)
>>> block, position = feed.next(feed.start())
>>> block.inputs.shape, block.ids.shape, position
((3, 2, 25), (3, 2), 1)
>>> bool((feed.next(0)[0].inputs == block.inputs).all())   # the same position, the same block
True
>>> feed.next(position)[1], feed.next(2)
(2, (None, 2))
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from contlearn.errors import ConfigError
from contlearn.puzzles.dataset import puzzle_kind
from contlearn.puzzles.puzzle_set import PuzzleSet
from contlearn.puzzles.transforms import apply

ORDER, AUGMENT = 0, 1  # the streams of randomness under the feed's seed


class PuzzleBlock(NamedTuple):
  """One block: `inputs`, `labels` int32 `[steps, batch, L]`, `ids` int32 `[steps, batch]` (`PuzzleSet.ids`)."""

  inputs: np.ndarray
  labels: np.ndarray
  ids: np.ndarray


class PuzzleFeed:
  """Blocks of `puzzles`, shuffled per epoch and optionally augmented (module docstring).

  Args:
    puzzles: the set to read.
    steps, batch: the shape of a block, `[steps, batch, L]`.
    seed: the order and the augmentations.
    augment: draw a symmetry for every puzzle of every block (refused for ARC: module docstring).
    blocks: blocks before the feed ends; None: no end.
  """

  def __init__(
    self, puzzles: PuzzleSet, *, steps: int, batch: int, seed: int = 0, augment: bool = True, blocks: int | None = None
  ):
    if min(steps, batch) < 1 or len(puzzles) < 1 or (blocks is not None and blocks < 0) or seed < 0:
      raise ConfigError(
        f"a puzzle feed needs steps, batch >= 1 ({steps}, {batch}), puzzles ({len(puzzles)}), "
        f"seed >= 0 ({seed}) and blocks >= 0 or None ({blocks})"
      )
    if augment and puzzles.config.kind == "arc":
      raise ConfigError(
        "an ARC feed needs augment=False: ARC augmentations are baked into the set and its ids (arc_sets)"
      )
    self.puzzles, self.steps, self.batch, self.seed = puzzles, steps, batch, seed
    self.augment, self.blocks = augment, blocks
    self.sample = puzzle_kind(puzzles.config).sample

  def start(self) -> int:
    return 0

  def rows(self, position: int) -> np.ndarray:
    """int `[steps * batch]`: the puzzles (indices into the set) of the block at `position`."""
    n, size = self.steps * self.batch, len(self.puzzles)
    epoch, offset = np.divmod(position * n + np.arange(n), size)
    rows = np.empty(n, np.int64)
    for e in np.unique(epoch):
      order = np.random.default_rng([self.seed, ORDER, int(e)]).permutation(size)
      rows[epoch == e] = order[offset[epoch == e]]
    return rows

  def next(self, position: int) -> tuple[PuzzleBlock | None, int]:
    position = int(position)
    if self.blocks is not None and position >= self.blocks:
      return None, position
    rows = self.rows(position)
    inputs, labels = self.puzzles.inputs[rows], self.puzzles.labels[rows]
    if self.augment:
      transforms = self.sample(np.random.default_rng([self.seed, AUGMENT, position]), len(rows))
      inputs, labels = apply(transforms, inputs), apply(transforms, labels)
    shape = (self.steps, self.batch)
    block = PuzzleBlock(inputs.reshape(*shape, -1), labels.reshape(*shape, -1), self.puzzles.ids[rows].reshape(shape))
    return block, position + 1

  def describe(self) -> str:
    c = self.puzzles.config
    length = "endless" if self.blocks is None else f"{self.blocks} blocks"
    augmented = "augmented" if self.augment else "as generated"
    return (
      f"{len(self.puzzles)} {c.kind} puzzles of size {c.size}, {augmented}, in blocks of "
      f"[{self.steps}, {self.batch}], seed {self.seed}, {length}"
    )
