"""Reasoning on ARC-AGI tasks: TRM and HRM against one pass, trained on the tasks' demonstrations, scored by vote.

Command:   contlearn run reasoning_arc                            # a few small ARC-AGI-1 tasks on a 10x10 canvas
           contlearn run reasoning_arc --set scale=smoke          (a smoke run, a few minutes)
           contlearn run reasoning_arc --set scale=gpu            (ARC-AGI-1 on the 30x30 canvas, 1000 augmentations)
Runtime:   about 19 minutes on 2 CPU cores shared with two other runs (1,112 s at bc60fbf; every exact and
           ARC score 0, docs/reasoning.md); the smoke run about 3 minutes.
Outputs:   OUT/results.json, OUT/results.md, OUT/segments.png; OUT/<model>/ (metrics.jsonl, checkpoints/,
           row.json); `--resume` keeps finished models and continues an interrupted one.

Data: `contlearn.puzzles.arc_sets` (through `splits` with kind="arc"): every
demonstration pair of the first `puzzles.tasks` training and evaluation
tasks that fit the canvas, under `puzzles.augmentations` dihedral x colour
augmentations (the identity first), each (task, augmentation) its own puzzle
id and embedding; the test split is the evaluation tasks' test inputs under
the same augmentations. The official HRM/TRM recipe: training sees the
evaluation tasks' demonstrations, never their test inputs. Scores
(`contlearn.reasoning.comparison`): exact accuracy per augmented test input
after 1..N segments, the halting statistics, and the ARC score pass@1 /
pass@2 of the vote over augmentations. The canvas padding is left out of
the loss and of every score.

The CPU default is a pipeline check, not a measurement of ARC ability: a
few small tasks, a tiny model, a few hundred steps. `scale=gpu` is the
official setting's shape: ARC-AGI-1 (every task fits the 30x30 canvas), 1000
augmentations, width 512, 8 heads, 16 puzzle-embedding tokens, T=3 rounds
of n=4 latent updates, up to 16 segments, batch 768, rates 1e-4 (network)
and 1e-2 (embeddings), weight decay 0.1, 2000 steps of warm-up; its expected
cost is in docs/reasoning.md.
"""

from __future__ import annotations

import dataclasses
import pathlib

from contlearn.puzzles import PuzzleConfig
from contlearn.reasoning.comparison import MODELS, ComparisonConfig, report, run_comparison

__all__ = ["MODELS", "Config", "get_config", "report", "run"]

PUZZLES = PuzzleConfig(kind="arc", size=10, version="arc-agi-1", tasks=6, augmentations=8, seed=0)

PRESETS = {
  "smoke": {
    "puzzles": PuzzleConfig(kind="arc", size=6, version="arc-agi-1", tasks=2, augmentations=2, seed=0),
    **{"width": 16, "max_segments": 2, "steps": 40, "batch": 16, "block": 10, "ema_rate": 0.9},
  },
  "gpu": {
    "puzzles": PuzzleConfig(kind="arc", size=30, version="arc-agi-1", augmentations=1000, seed=0),
    **{"width": 512, "heads": 8, "puzzle_tokens": 16, "cycles": 3, "latent_steps": 4, "max_segments": 16},
    **{"batch": 768, "steps": 100_000, "block": 500, "checkpoint_every": 10, "lr": 1e-4, "puzzle_lr": 1e-2},
    **{"warmup": 2000, "weight_decay": 0.1, "ema_rate": 0.999, "eval_batch": 500},
  },
}


@dataclasses.dataclass(frozen=True)
class Config(ComparisonConfig):
  __doc__ = ComparisonConfig.__doc__

  puzzles: PuzzleConfig = PUZZLES
  mixer: str = "attention"
  puzzle_tokens: int = 4
  steps: int = 400
  batch: int = 32
  eval_batch: int = 64


def get_config() -> Config:
  return Config()


def run(cfg: Config, out: pathlib.Path, *, resume: bool = False, progress: bool = True) -> dict:
  """The comparison of `cfg` (`contlearn.reasoning.comparison.run_comparison`) into `out`."""
  return run_comparison(cfg, PRESETS, out, resume=resume, progress=progress)
