"""Perfect mazes: one path between any two cells; the task is to mark the path from start to goal.

`carve` cuts a maze of `height x width` cells by a randomised depth-first
search (the recursive backtracker: from a random cell, walk to a random
unvisited neighbour, knocking down the wall between, and step back when none
is left). Its passages form a spanning tree of the cells, so the path
between any two cells is unique. The maze is drawn on a token grid of
`(2 * height + 1) x (2 * width + 1)`: cell `(r, c)` is token `(2r + 1, 2c + 1)`,
the wall between two neighbouring cells the token between them.

Tokens (as HRM's `# SGo`, without its padding token):

| id | name | char |
|---|---|---|
| 0 | `WALL` | `#` |
| 1 | `SPACE` | ` ` |
| 2 | `START` | `S` |
| 3 | `GOAL` | `G` |
| 4 | `PATH` | `o` |

`generate` puts start and goal on two distinct random cells. The input is the
maze with S and G; the label is the same grid with every token of the path
between them (S and G excluded) set to `PATH`: the unique path, found by a
breadth-first search over the open tokens (`shortest_path`).

>>> maze = generate(3, 4, np.random.default_rng(0))
>>> print(render(maze.input))
#########
#G  #   #
# # # # #
# #   # #
# ##### #
#     #S#
#########
>>> print(render(maze.label))
#########
#Goo#ooo#
# #o#o#o#
# #ooo#o#
# #####o#
#     #S#
#########
>>> maze.path
13

Symmetries (square mazes): the eight of `contlearn.puzzles.dihedral`, as
cell permutations (`sample`); `canonical` is the smallest of a maze's eight
images, so two mazes share it exactly when one is a rotation or reflection
of the other.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from contlearn.puzzles import dihedral
from contlearn.puzzles.transforms import Transforms

WALL, SPACE, START, GOAL, PATH = range(5)
VOCAB = 5
CHARS = "# SGo"
STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1))


class Maze(NamedTuple):
  """A generated maze: `input` (walls, spaces, S, G) and `label` (the path marked), int32 `[2h + 1, 2w + 1]`.

  Attributes:
    path: tokens on the path between S and G (the `PATH` tokens of `label`).
  """

  input: np.ndarray
  label: np.ndarray
  path: int


def carve(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
  """bool `[2 * height + 1, 2 * width + 1]`, True where open: a random perfect maze (module docstring)."""
  open_ = np.zeros((2 * height + 1, 2 * width + 1), bool)
  visited = [[False] * width for _ in range(height)]
  r, c = divmod(int(rng.integers(height * width)), width)
  visited[r][c] = open_[2 * r + 1, 2 * c + 1] = True
  stack = [(r, c)]
  while stack:
    r, c = stack[-1]
    fresh = [
      (r + dr, c + dc)
      for dr, dc in STEPS
      if 0 <= r + dr < height and 0 <= c + dc < width and not visited[r + dr][c + dc]
    ]
    if not fresh:
      stack.pop()
      continue
    nr, nc = fresh[int(rng.integers(len(fresh)))]
    visited[nr][nc] = open_[r + nr + 1, c + nc + 1] = open_[2 * nr + 1, 2 * nc + 1] = True
    stack.append((nr, nc))
  return open_


def shortest_path(open_: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
  """The tokens of a shortest path from `start` to `goal` through open tokens (4-neighbours), both ends included;
  [] when none exists."""
  parent = {start: start}
  queue = deque([start])
  while queue and goal not in parent:
    r, c = queue.popleft()
    for dr, dc in STEPS:
      nxt = (r + dr, c + dc)
      if 0 <= nxt[0] < open_.shape[0] and 0 <= nxt[1] < open_.shape[1] and open_[nxt] and nxt not in parent:
        parent[nxt] = (r, c)
        queue.append(nxt)
  if goal not in parent:
    return []
  path = [goal]
  while path[-1] != start:
    path.append(parent[path[-1]])
  return path[::-1]


def generate(height: int, width: int, rng: np.random.Generator) -> Maze:
  """A random perfect maze of `height x width` cells with start and goal on two distinct random cells."""
  if height * width < 2:
    raise ValueError(f"a {height}x{width} maze has no room for a start and a distinct goal")
  open_ = carve(height, width, rng)
  start, goal = (
    (2 * (cell // width) + 1, 2 * (cell % width) + 1) for cell in rng.choice(height * width, 2, replace=False)
  )
  grid = np.where(open_, SPACE, WALL).astype(np.int32)
  grid[start], grid[goal] = START, GOAL
  label = grid.copy()
  path = shortest_path(open_, start, goal)[1:-1]
  for token in path:
    label[token] = PATH
  return Maze(grid, label, len(path))


def render(grid: np.ndarray) -> str:
  """A token grid `[H, W]` as text, one line per row (`CHARS`)."""
  return "\n".join("".join(CHARS[t] for t in row) for row in np.asarray(grid))


def sample(side: int, rng: np.random.Generator, n: int) -> Transforms:
  """n of the eight rotations and reflections of a `side x side` token grid, drawn uniformly."""
  cells = np.stack([dihedral.cell_permutation(side, side, k) for k in range(dihedral.COUNT)])
  return Transforms(cells[rng.integers(dihedral.COUNT, size=n)], np.tile(np.arange(VOCAB, dtype=np.int32), (n, 1)))


def canonical(grid: np.ndarray) -> np.ndarray:
  """int8 `[H * W]`: the smallest (row-major, lexicographic) of the eight images of a square token grid `[H, W]`."""
  images = np.stack([dihedral.transform(grid, k).ravel() for k in range(dihedral.COUNT)]).astype(np.int8)
  return images[np.lexsort(images.T[::-1])[0]]
