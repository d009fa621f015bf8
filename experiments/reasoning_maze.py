"""Reasoning on small perfect mazes: TRM and HRM (recursion, deep supervision) against one pass of the same parameters.

Command:   contlearn run reasoning_maze                           # 3 models, 3 seeds, 1000 + 1000 mazes
           contlearn run reasoning_maze --set scale=smoke         (a smoke run, a few minutes)
           contlearn run reasoning_maze --set scale=gpu           (31x31-token mazes, paper-sized models)
Runtime:   about 11 minutes on 2 CPU cores shared with one niced run (676 s measured at 3f118b9: TRM 294 s,
           HRM 141 s, single pass 119 s of training; docs/reasoning.md); the smoke run about 2 minutes.
Outputs:   OUT/results.json, OUT/results.md, OUT/segments.png; OUT/<model>/ (metrics.jsonl, checkpoints/,
           row.json); `--resume` keeps finished models and continues an interrupted one.

Mazes: perfect mazes of 4x4 cells (a 9x9 token grid: wall, space, start,
goal; the label marks the unique path) from `contlearn.puzzles.splits` (no
test maze a rotation or reflection of a training one), augmented on the fly
by the feed with the eight symmetries of the square; every maze has id 0
(one shared puzzle embedding), as in the official maze data. Models,
training and scores: `contlearn.reasoning.comparison`, as in
reasoning_sudoku: equal parameters, equal optimizer steps, seeds as lanes,
exact accuracy after 1..N segments, accuracy on the path tokens, halting.
The network attends across positions (`mixer="attention"`, TRM-Att, the
paper's choice for mazes); 500 steps of batch 32, as a 9x9-token maze costs
about 2.2 times a 6x6 Sudoku per row.

`scale=gpu` is the accelerator-scale configuration: mazes of 15x15 cells
(31x31 = 961 tokens, the size of Maze-Hard's 30x30 grids), width 512, T=3
rounds of n=4 latent updates, up to 16 segments, batch 768, 50,000 steps
with 2,000 of warm-up, the official rates (1e-4) and weight decay (1.0).
Its expected cost is in docs/reasoning.md.
"""

from __future__ import annotations

import dataclasses
import pathlib

from contlearn.puzzles import PuzzleConfig
from contlearn.reasoning.comparison import MODELS, ComparisonConfig, report, run_comparison

__all__ = ["MODELS", "Config", "get_config", "report", "run"]

PUZZLES = PuzzleConfig(kind="maze", size=4, train=1000, test=1000, seed=0)

PRESETS = {
  "smoke": {
    "puzzles": PuzzleConfig(kind="maze", size=3, train=64, test=64, seed=0),
    **{"width": 16, "layers": 2, "max_segments": 2, "steps": 40, "batch": 16, "block": 10, "ema_rate": 0.9},
  },
  "gpu": {
    "puzzles": PuzzleConfig(kind="maze", size=15, train=1000, test=1000, seed=0),
    **{"width": 512, "heads": 8, "puzzle_tokens": 16, "cycles": 3, "latent_steps": 4, "max_segments": 16},
    **{"batch": 768, "steps": 50_000},
    **{"block": 500, "checkpoint_every": 10, "lr": 1e-4, "puzzle_lr": 1e-4, "warmup": 2000, "weight_decay": 1.0},
    **{"ema_rate": 0.999, "eval_batch": 100},
  },
}


@dataclasses.dataclass(frozen=True)
class Config(ComparisonConfig):
  __doc__ = ComparisonConfig.__doc__

  puzzles: PuzzleConfig = PUZZLES
  mixer: str = "attention"
  steps: int = 500
  batch: int = 32


def get_config() -> Config:
  return Config()


def run(cfg: Config, out: pathlib.Path, *, resume: bool = False, progress: bool = True) -> dict:
  """The comparison of `cfg` (`contlearn.reasoning.comparison.run_comparison`) into `out`."""
  return run_comparison(cfg, PRESETS, out, resume=resume, progress=progress)
