"""The expected cost of the reasoning experiments' `scale=gpu` configurations, from XLA's own FLOP count.

    python benchmarks/reasoning_gpu_cost.py [--rate 200e12]

For each of reasoning_sudoku, reasoning_maze and reasoning_arc at
`scale=gpu`, and each model (TRM, HRM, single pass), the training step (one
supervision segment of every batch row: forward, loss, backward, the update
rule) is lowered for the preset's shapes, without running it or allocating
its state, and XLA's cost analysis gives its FLOPs. The training FLOPs are
that times the preset's steps; the hours are at `--rate` FLOP/s sustained
(default 200e12, an assumption: about 40% of an H100's dense TF32 rate,
which JAX's default precision gives float32 matrix products on such GPUs;
pass your own). Nothing is timed, so the machine
this runs on does not matter. Data preparation (9x9 Sudoku of at least 2000
solver nodes: about 25 minutes on one host core; ARC's 1000 augmentations:
about 10 minutes and 19 GB of host memory as int32) is not counted. Prints a
table; the last line is a JSON object, also written to
`bench_results/reasoning_gpu_cost.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from contlearn import catalog  # noqa: E402
from contlearn.puzzles import PuzzleBlock  # noqa: E402
from contlearn.reasoning import comparison  # noqa: E402

EXPERIMENTS = ("reasoning_sudoku", "reasoning_maze", "reasoning_arc")
ARC_IDS = 1000 * 800  # about (tasks) x (augmentations) of ARC-AGI-1: the puzzle table's rows


def step_flops(model, batch: int) -> float:
  """XLA's FLOP count of one training step of `model` on `batch` rows, from shapes only."""
  learner = comparison._module(model)[0](model, batch)
  state = jax.eval_shape(learner.init, jax.random.key(0))
  length = model.length
  ints = lambda *shape: jax.ShapeDtypeStruct(shape, jax.numpy.int32)  # noqa: E731
  block = PuzzleBlock(ints(batch, length), ints(batch, length), ints(batch))
  cost = jax.jit(learner.step).lower(state, block).cost_analysis()
  return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rate", type=float, default=200e12, help="sustained FLOP/s assumed")
  args = parser.parse_args()
  rows = []
  for name in EXPERIMENTS:
    module = catalog.load(name)
    cfg = comparison.resolved(dataclasses.replace(module.get_config(), scale="gpu"), module.PRESETS)
    ids = ARC_IDS if cfg.puzzles.kind == "arc" else 1
    for model_name in cfg.models:
      model = comparison.model_config(cfg, model_name, ids=ids)
      flops = step_flops(model, cfg.batch)
      rows.append(
        {
          "experiment": name,
          "model": model_name,
          "tokens": model.tokens,
          "width": model.width,
          "batch": cfg.batch,
          "steps": cfg.steps,
          "step_gflop": flops / 1e9,
          "train_pflop": flops * cfg.steps / 1e15,
          "hours_at_rate": flops * cfg.steps / args.rate / 3600,
        }
      )
  columns = ["experiment", "model", "tokens", "width", "batch", "steps", "step_gflop", "train_pflop", "hours_at_rate"]
  common.print_table(rows, columns)
  common.write_json("reasoning_gpu_cost", {"rate_flops_per_s": args.rate, "rows": rows})
  return 0


if __name__ == "__main__":
  sys.exit(main())
