"""Independent checks for the puzzle tests: written from the rules, sharing no code with contlearn.puzzles."""

import itertools

import numpy as np

BOX = {4: (2, 2), 6: (2, 3), 9: (3, 3)}


def units(n):
  """Every row, column and box of an n x n board, as lists of flat cell indices."""
  br, bc = BOX[n]
  rows = [[r * n + c for c in range(n)] for r in range(n)]
  cols = [[r * n + c for r in range(n)] for c in range(n)]
  boxes = [
    [(r0 + r) * n + c0 + c for r in range(br) for c in range(bc)] for r0 in range(0, n, br) for c0 in range(0, n, bc)
  ]
  return rows + cols + boxes


def valid_grid(grid, n):
  """A full solution: every row, column and box holds 1..n once."""
  grid = list(np.asarray(grid).ravel())
  return all(sorted(grid[i] for i in unit) == list(range(1, n + 1)) for unit in units(n))


def count_solutions(puzzle, n, limit=2):
  """Solutions of `puzzle` (0 = blank), up to `limit`, by a plain search over Python sets; and the first."""
  grid = [int(v) for v in np.asarray(puzzle).ravel()]
  peers = [set() for _ in range(n * n)]
  for unit in units(n):
    for cell in unit:
      peers[cell].update(u for u in unit if u != cell)
  if any(grid[c] and any(grid[p] == grid[c] for p in peers[c]) for c in range(n * n)):
    return 0, None
  found = []

  def options(cell):
    return set(range(1, n + 1)) - {grid[p] for p in peers[cell]}

  def search():
    blanks = [c for c in range(n * n) if grid[c] == 0]
    if not blanks:
      found.append(list(grid))
      return
    cell = min(blanks, key=lambda c: len(options(c)))
    for digit in sorted(options(cell)):
      grid[cell] = digit
      search()
      grid[cell] = 0
      if len(found) >= limit:
        return

  search()
  return len(found), (np.array(found[0]) if found else None)


def geometric_images(grid, n):
  """Every image of an n x n grid under band/row/stack/column permutations (and transposition for square boxes)."""
  br, bc = BOX[n]
  g = np.asarray(grid).reshape(n, n)

  def lines(groups, size):
    for order in itertools.permutations(range(groups)):
      for within in itertools.product(itertools.permutations(range(size)), repeat=groups):
        yield [o * size + w for o, ws in zip(order, within) for w in ws]

  bases = [g, g.T] if br == bc else [g]
  return [b[r][:, c].ravel() for b in bases for r in lines(n // br, br) for c in lines(n // bc, bc)]


def first_appearance(grid):
  """`grid` with its nonzero tokens renamed 1, 2, ... in order of first appearance (a relabelling-free form)."""
  names = {}
  return tuple(0 if v == 0 else names.setdefault(int(v), len(names) + 1) for v in np.asarray(grid).ravel())


def brute_canonical(grid, n):
  """The smallest (clue pattern, relabelled digits) over the whole group, by enumeration."""
  return min((tuple(int(v != 0) for v in image), first_appearance(image)) for image in geometric_images(grid, n))[1]


def open_graph(grid, wall=0):
  """The non-wall tokens of a 2-D token grid and the edges between 4-neighbours among them."""
  grid = np.asarray(grid)
  nodes = {(r, c) for r in range(grid.shape[0]) for c in range(grid.shape[1]) if grid[r, c] != wall}
  edges = {(a, b) for a in nodes for b in ((a[0] + 1, a[1]), (a[0], a[1] + 1)) if b in nodes}
  return nodes, edges


def tree_path(nodes, edges, start, goal):
  """The path from start to goal by depth-first search, if the graph is a tree (connected, |E| = |V| - 1); else None."""
  neighbours = {v: [] for v in nodes}
  for a, b in edges:
    neighbours[a].append(b)
    neighbours[b].append(a)
  parent, stack = {start: None}, [start]
  while stack:
    v = stack.pop()
    for w in neighbours[v]:
      if w not in parent:
        parent[w] = v
        stack.append(w)
  if len(parent) != len(nodes) or len(edges) != len(nodes) - 1:
    return None
  path = [goal]
  while parent[path[-1]] is not None:
    path.append(parent[path[-1]])
  return path[::-1]
