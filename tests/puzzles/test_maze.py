"""Perfect mazes: the open tokens form a tree, so one path joins start and goal, and the label is that path."""

import numpy as np
import pytest

from contlearn.puzzles import dihedral, maze
from contlearn.puzzles.transforms import apply
from tests.puzzles.checks import open_graph, tree_path


def _check(m, height, width):
  grid, label = np.asarray(m.input), np.asarray(m.label)
  assert grid.shape == label.shape == (2 * height + 1, 2 * width + 1)
  assert set(np.unique(grid)) == {maze.WALL, maze.SPACE, maze.START, maze.GOAL}
  assert (grid[0] == maze.WALL).all() and (grid[-1] == maze.WALL).all()
  assert (grid[:, 0] == maze.WALL).all() and (grid[:, -1] == maze.WALL).all()
  assert (grid[::2, ::2] == maze.WALL).all()  # the corners between cells are walls
  assert (grid[1::2, 1::2] != maze.WALL).all()  # every cell is open
  (start,), (goal,) = np.argwhere(grid == maze.START), np.argwhere(grid == maze.GOAL)
  assert start[0] % 2 == start[1] % 2 == goal[0] % 2 == goal[1] % 2 == 1
  nodes, edges = open_graph(grid)
  path = tree_path(nodes, edges, tuple(start), tuple(goal))
  assert path is not None, "the open tokens are not a tree: some pair of cells has no path or two"
  marked = {tuple(p) for p in np.argwhere(label == maze.PATH)}
  assert marked == set(path[1:-1]) and m.path == len(path) - 2
  assert (np.where(label == maze.PATH, maze.SPACE, label) == grid).all()  # the label only marks the path


@pytest.mark.parametrize("height, width", [(2, 2), (3, 5), (6, 6), (12, 12)])
def test_mazes_are_perfect_and_labelled_with_their_unique_path(height, width):
  for seed in range(5):
    _check(maze.generate(height, width, np.random.default_rng(seed)), height, width)


def test_generation_is_deterministic_given_a_seed():
  a, b, c = (maze.generate(8, 8, np.random.default_rng(s)) for s in (3, 3, 4))
  assert (a.input == b.input).all() and (a.label == b.label).all()
  assert not (a.input == c.input).all()


def test_too_small_a_maze_is_refused():
  with pytest.raises(ValueError, match="no room"):
    maze.generate(1, 1, np.random.default_rng(0))


def test_shortest_path_reports_no_path():
  closed = np.zeros((3, 5), bool)
  closed[1, 1] = closed[1, 3] = True
  assert maze.shortest_path(closed, (1, 1), (1, 3)) == []


def test_rotations_and_reflections_keep_mazes_valid():
  m = maze.generate(5, 5, np.random.default_rng(0))
  t = maze.sample(11, np.random.default_rng(0), 64)
  assert len({tuple(c) for c in t.cells}) == dihedral.COUNT  # 64 draws meet all eight
  inputs, labels = apply(t, np.stack([m.input.ravel()] * 64)), apply(t, np.stack([m.label.ravel()] * 64))
  for x, y in zip(inputs, labels):
    _check(maze.Maze(x.reshape(11, 11), y.reshape(11, 11), m.path), 5, 5)


def test_canonical_form_is_the_same_for_all_eight_images_and_tells_mazes_apart():
  a, b = (maze.generate(4, 4, np.random.default_rng(s)) for s in (0, 1))
  key = maze.canonical(a.input)
  for k in range(dihedral.COUNT):
    assert (maze.canonical(dihedral.transform(a.input, k)) == key).all()
  assert not (maze.canonical(b.input) == key).all()
  assert any((dihedral.transform(a.input, k).ravel() == key).all() for k in range(dihedral.COUNT))


def test_render_uses_the_documented_characters():
  assert maze.render(np.array([[0, 1, 2, 3, 4]])) == "# SGo"
