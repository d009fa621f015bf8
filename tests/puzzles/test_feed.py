"""The puzzle feed: a pure function of its position, resumable, epochs of the whole set, valid augmentations."""

import json

import numpy as np
import pytest

from contlearn.errors import ConfigError
from contlearn.puzzles import PuzzleConfig, PuzzleFeed, splits, sudoku, sudoku_symmetry
from tests.puzzles.checks import count_solutions, valid_grid


@pytest.fixture(scope="module")
def sudoku6():
  return splits(PuzzleConfig(kind="sudoku", size=6, train=10, test=0, seed=0)).train


@pytest.fixture(scope="module")
def mazes():
  return splits(PuzzleConfig(kind="maze", size=3, train=7, test=0, seed=0)).train


def _same(a, b):
  return all((x == y).all() for x, y in zip(a, b))


def test_the_same_position_gives_the_same_block(sudoku6):
  feed, other = (PuzzleFeed(sudoku6, steps=2, batch=3, seed=4) for _ in range(2))
  assert _same(feed.next(5)[0], other.next(5)[0])
  assert _same(feed.next(5)[0], feed.next(5)[0])
  assert not _same(feed.next(5)[0], feed.next(6)[0])
  assert not _same(feed.next(5)[0], PuzzleFeed(sudoku6, steps=2, batch=3, seed=5).next(5)[0])


def test_restarting_from_a_saved_position_reads_the_same_blocks(mazes):
  feed = PuzzleFeed(mazes, steps=2, batch=3, seed=1, blocks=8)
  position, straight = feed.start(), []
  while True:
    block, position = feed.next(position)
    if block is None:
      break
    straight.append(block)
    if len(straight) == 3:
      saved = json.dumps(position)  # as a checkpoint stores it
  assert len(straight) == 8 and position == 8
  resumed = PuzzleFeed(mazes, steps=2, batch=3, seed=1, blocks=8)
  position = json.loads(saved)
  assert position == 3 and isinstance(position, int)
  for want in straight[3:]:
    block, position = resumed.next(position)
    assert _same(block, want)
  assert resumed.next(position) == (None, 8)


def test_each_epoch_reads_every_puzzle_once(mazes):
  feed = PuzzleFeed(mazes, steps=1, batch=7, seed=0, augment=False)
  ids = np.concatenate([feed.next(p)[0].ids.ravel() for p in range(3)])
  for epoch in ids.reshape(3, 7):
    assert sorted(epoch) == list(range(7))
  assert not (ids[:7] == ids[7:14]).all()  # a new shuffle each epoch
  odd = PuzzleFeed(mazes, steps=2, batch=2, seed=0, augment=False)  # blocks across epoch boundaries
  ids = np.concatenate([odd.next(p)[0].ids.ravel() for p in range(7)])
  assert all(sorted(e) == list(range(7)) for e in ids.reshape(4, 7))


def test_without_augmentation_blocks_are_the_puzzles_themselves(sudoku6):
  block, _ = PuzzleFeed(sudoku6, steps=3, batch=4, augment=False).next(2)
  assert block.inputs.shape == block.labels.shape == (3, 4, 36) and block.ids.shape == (3, 4)
  assert block.inputs.dtype == block.labels.dtype == block.ids.dtype == np.int32
  assert (block.inputs == sudoku6.inputs[block.ids]).all() and (block.labels == sudoku6.labels[block.ids]).all()


def test_augmented_blocks_are_valid_symmetries_of_their_puzzles(sudoku6):
  block, _ = PuzzleFeed(sudoku6, steps=2, batch=5, seed=3).next(0)
  box = sudoku.BOXES[6]
  inputs, labels, ids = block.inputs.reshape(10, 36), block.labels.reshape(10, 36), block.ids.ravel()
  assert not (inputs == sudoku6.inputs[ids]).all()
  for x, y, i in zip(inputs, labels, ids):
    assert valid_grid(y, 6)
    count, solution = count_solutions(x, 6)
    assert count == 1 and (solution == y).all()
    assert (sudoku_symmetry.canonical(x, box) == sudoku_symmetry.canonical(sudoku6.inputs[i], box)).all()


def test_bad_feed_arguments_are_refused(sudoku6):
  with pytest.raises(ConfigError, match="steps, batch >= 1"):
    PuzzleFeed(sudoku6, steps=0, batch=2)
  with pytest.raises(ConfigError, match="blocks >= 0 or None"):
    PuzzleFeed(sudoku6, steps=1, batch=2, blocks=-1)
  assert "10 sudoku puzzles of size 6, augmented" in PuzzleFeed(sudoku6, steps=1, batch=2).describe()
