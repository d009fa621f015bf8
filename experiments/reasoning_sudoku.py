"""Reasoning on 6x6 Sudoku: TRM and HRM (recursion, deep supervision) against one pass of the same parameters.

Command:   contlearn run reasoning_sudoku                         # 3 models, 3 seeds, 1000 + 1000 puzzles
           contlearn run reasoning_sudoku --set scale=smoke       (a smoke run, a few minutes)
           contlearn run reasoning_sudoku --set scale=gpu         (9x9, hard puzzles, paper-sized models)
Runtime:   about 13 minutes on 2 CPU cores shared with one niced run (756 s measured at 3f118b9: TRM 389 s,
           HRM 172 s, single pass 142 s of training; docs/reasoning.md); the smoke run about 2 minutes
           (three models compiled).
Outputs:   OUT/results.json, OUT/results.md, OUT/segments.png; OUT/<model>/ (metrics.jsonl, checkpoints/,
           row.json); `--resume` keeps finished models and continues an interrupted one.

Puzzles: 6x6 Sudoku from `contlearn.puzzles.splits` (no test puzzle a
symmetry of a training one), augmented on the fly by the feed; every puzzle
has id 0 (one shared puzzle embedding), as in the official Sudoku data.
Models, training and scores: `contlearn.reasoning.comparison`. The three
models train for the same number of optimizer steps (one step = one
supervision segment of every batch row), the seeds as lanes of one vmapped
program (same puzzles in the same order, their own initialisation and
halting draws), and are scored on the test split with the weights' moving
average: exact accuracy after 1..N segments, accuracy on the blanks, and
the halting statistics.

`scale=gpu` is the accelerator-scale configuration: 9x9 puzzles of at
least 2000 solver nodes (about the hardest tenth of minimal puzzles) (a difficulty filter in the spirit of
Sudoku-Extreme's backtrack count), width 512, T=3 rounds of n=6 latent
updates, up to 16 segments, batch 768, 50,000 steps with 2,000 of warm-up,
the official rates (1e-4 both) and weight decay (1.0). Its expected cost is
in docs/reasoning.md.
"""

from __future__ import annotations

import dataclasses
import pathlib

from contlearn.puzzles import PuzzleConfig
from contlearn.reasoning.comparison import MODELS, ComparisonConfig, report, run_comparison

__all__ = ["MODELS", "Config", "get_config", "report", "run"]

PUZZLES = PuzzleConfig(kind="sudoku", size=6, train=1000, test=1000, seed=0)

PRESETS = {
  "smoke": {
    "puzzles": PuzzleConfig(kind="sudoku", size=6, train=64, test=64, seed=0),
    **{"width": 16, "layers": 2, "max_segments": 2, "steps": 40, "batch": 16, "block": 10, "ema_rate": 0.9},
  },
  "gpu": {
    "puzzles": PuzzleConfig(kind="sudoku", size=9, train=1000, test=1000, seed=0, min_difficulty=2000),
    **{"width": 512, "puzzle_tokens": 16, "cycles": 3, "latent_steps": 6, "max_segments": 16},
    **{"batch": 768, "steps": 50_000},
    **{"block": 500, "checkpoint_every": 10, "lr": 1e-4, "puzzle_lr": 1e-4, "warmup": 2000, "weight_decay": 1.0},
    **{"ema_rate": 0.999, "eval_batch": 500},
  },
}


@dataclasses.dataclass(frozen=True)
class Config(ComparisonConfig):
  __doc__ = ComparisonConfig.__doc__

  puzzles: PuzzleConfig = PUZZLES


def get_config() -> Config:
  return Config()


def run(cfg: Config, out: pathlib.Path, *, resume: bool = False, progress: bool = True) -> dict:
  """The comparison of `cfg` (`contlearn.reasoning.comparison.run_comparison`) into `out`."""
  return run_comparison(cfg, PRESETS, out, resume=resume, progress=progress)
