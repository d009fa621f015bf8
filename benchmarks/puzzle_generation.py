"""What the puzzles cost to make on the host: Sudoku, mazes, the canonical form and a feed's block.

    python benchmarks/puzzle_generation.py [--draws 300] [--blocks 5] [--hard 100]
        [--arc-augmentations 10] [--arc-version arc-agi-1]

Everything in `contlearn.puzzles` runs in NumPy on the host, before and
beside the compiled steps, so its cost is wall time per call on one core.
Rows:

- `sudoku NxN`: `sudoku.generate(box, rng)` (a minimal puzzle) over
  `--draws` seeds `default_rng([0, i])`; milliseconds per puzzle (median,
  90th percentile, largest, mean), clues, the difficulty (`solve`'s nodes)
  at its 50th / 90th / 99th percentile and largest, and the share of draws
  at `HARD` nodes or more (the accelerator Sudoku preset's
  `min_difficulty`, which keeps only those).
- `canonical NxN`: `sudoku_symmetry.canonical` of those puzzles, ms each.
- `maze SxS`: `maze.generate(S, S, rng)` over `--draws` seeds, ms each.
- `hard 9x9 set`: `dataset.splits` of `--hard` 9x9 puzzles at `HARD` nodes
  or more (the accelerator Sudoku preset's 2,000 at the same filter take
  2,000 / `--hard` times as long), one call.
- `VERSION 30x30 set`: `dataset.splits` of ARC (`--arc-version`,
  ARC-AGI-1 by default) on the 30x30 canvas, every task,
  `--arc-augmentations` augmentations each (the accelerator ARC preset
  takes 1,000 of ARC-AGI-1: about 1,000 / `--arc-augmentations` times as
  long and as large), one call; `rows` its training and test puzzles,
  `mb` the bytes of their arrays.
- `block`: `PuzzleFeed.next` of a `[16, 64]` block with augmentations, over
  `--blocks` positions of a 64-puzzle set (9x9 Sudoku; 15x15-cell mazes of
  961 tokens).

No peer: the numbers are what `docs/reasoning.md` quotes.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402
from contlearn.puzzles import dataset, maze, sudoku, sudoku_symmetry  # noqa: E402
from contlearn.puzzles.feed import PuzzleFeed  # noqa: E402
from contlearn.puzzles.puzzle_set import PuzzleConfig  # noqa: E402

HARD = 2000  # experiments/reasoning_sudoku.py's min_difficulty


def timed(fn: Callable, args: list) -> tuple[list, np.ndarray]:
  """`fn(a)` for each `a` of `args`: the results and the milliseconds of each call."""
  out, ms = [], []
  for a in args:
    start = time.perf_counter()
    out.append(fn(a))
    ms.append((time.perf_counter() - start) * 1e3)
  return out, np.asarray(ms)


def row(name: str, ms: np.ndarray, **extra) -> dict:
  """A table row: median, 90th percentile, largest and mean milliseconds of `ms`, and `extra`."""
  return {
    "what": name,
    "ms_median": float(np.median(ms)),
    "ms_p90": float(np.percentile(ms, 90)),
    "ms_max": float(ms.max()),
    "ms_mean": float(ms.mean()),
    "calls": len(ms),
    **extra,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--draws", type=int, default=300, help="puzzles (and mazes) generated per size")
  parser.add_argument("--blocks", type=int, default=5, help="feed blocks timed per kind")
  parser.add_argument("--hard", type=int, default=100, help=f"9x9 puzzles of {HARD} nodes or more in the timed set")
  parser.add_argument("--arc-augmentations", type=int, default=10, help="augmentations of each ARC task")
  parser.add_argument("--arc-version", default="arc-agi-1", choices=("arc-agi-1", "arc-agi-2"))
  args = parser.parse_args()

  def rngs():
    return [np.random.default_rng([0, i]) for i in range(args.draws)]

  rows = []
  for n in (4, 6, 9):
    box = sudoku.BOXES[n]
    puzzles, ms = timed(lambda rng, box=box: sudoku.generate(box, rng), rngs())
    nodes = np.asarray([p.difficulty for p in puzzles])
    p50, p90, p99 = np.percentile(nodes, [50, 90, 99])
    rows.append(
      row(
        f"sudoku {n}x{n}",
        ms,
        clues=float(np.mean([p.clues for p in puzzles])),
        nodes_mean=float(nodes.mean()),
        nodes_p50=float(p50),
        nodes_p90=float(p90),
        nodes_p99=float(p99),
        nodes_max=int(nodes.max()),
        hard_share=float(np.mean(nodes >= HARD)),
      )
    )
    _, ms = timed(lambda p, box=box: sudoku_symmetry.canonical(p.input, box), puzzles)
    rows.append(row(f"canonical {n}x{n}", ms))
  hard = PuzzleConfig(kind="sudoku", size=9, train=args.hard, test=0, min_difficulty=HARD)
  _, ms = timed(dataset.splits, [hard])
  rows.append(row(f"hard 9x9 set of {args.hard}", ms))
  arc = PuzzleConfig(kind="arc", size=30, version=args.arc_version, augmentations=args.arc_augmentations, seed=0)
  (sets,), ms = timed(dataset.splits, [arc])
  arrays = [a for s in sets for a in (s.inputs, s.labels, s.ids, *s.meta.values())]
  rows.append(
    row(
      f"{args.arc_version} 30x30 set, {args.arc_augmentations} augmentations",
      ms,
      rows=sum(len(s.ids) for s in sets),
      mb=sum(a.nbytes for a in arrays) / 2**20,
    )
  )
  for side in (5, 15):
    _, ms = timed(lambda rng, side=side: maze.generate(side, side, rng), rngs())
    rows.append(row(f"maze {side}x{side}", ms))
  for config in (
    PuzzleConfig(kind="sudoku", size=9, train=64, test=0),
    PuzzleConfig(kind="maze", size=15, train=64, test=0),
  ):
    feed = PuzzleFeed(dataset.splits(config).train, steps=16, batch=64, seed=0)
    _, ms = timed(feed.next, list(range(args.blocks)))
    length = feed.puzzles.inputs.shape[1]
    rows.append(row(f"block [16, 64] of {config.kind} {config.size}x{config.size} (L={length})", ms))

  columns = [
    "what",
    "calls",
    "ms_median",
    "ms_p90",
    "ms_max",
    "ms_mean",
    "clues",
    "nodes_mean",
    "nodes_p50",
    "nodes_p90",
    "nodes_p99",
    "nodes_max",
    "hard_share",
    "rows",
    "mb",
  ]
  common.print_table(rows, columns)
  common.write_json("puzzle_generation", {"benchmark": "puzzle_generation", "rows": rows, "settings": vars(args)})


if __name__ == "__main__":
  main()
