"""How large EWC's Fisher is after each task, per seed: a hook on a cell of the three-scenarios table.

    python examples/ewc_fisher.py                      # split MNIST, task-IL, seeds 0, 1, 2
    python examples/ewc_fisher.py --set kinds=domain --set split.seeds=0,1,2,3,4
    python examples/ewc_fisher.py --set bench=permuted --set models=online_ewc

Runs one cell of `experiments/cl_three_scenarios.py` (the first of
`models` x `kinds` after the overrides, EWC task-IL by default) through
`contlearn.cl.cells.run_cell`, with one more hook: after every block (a
whole task by default) it reads the weights of the strategy's penalty
before the strength lambda (`PenaltyState.penalty.w`: EWC's summed Fisher
diagonals, online EWC's decayed one) and prints, per seed, their sum and largest entry. The rows
after task t show the Fisher of tasks 0..t; a task whose Fisher adds almost
nothing is one the penalty cannot protect, whatever its strength. Then each
seed's accuracy on task 0 after every task (the accuracy matrix's first
column). Writes `OUT/fisher.json` (default OUT: runs/ewc_fisher) besides the
cell's own files; an OUT that holds a finished cell is read back, so use a
fresh one.
"""

import argparse
import dataclasses
import importlib.util
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import loop
from contlearn.cl.cells import run_cell
from contlearn.overrides import apply_overrides

ROOT = pathlib.Path(__file__).resolve().parent.parent


def three_scenarios():
  spec = importlib.util.spec_from_file_location("cl_three_scenarios", ROOT / "experiments" / "cl_three_scenarios.py")
  mod = importlib.util.module_from_spec(spec)
  sys.modules["cl_three_scenarios"] = mod  # dataclasses look their module up there
  spec.loader.exec_module(mod)
  return mod


class FisherSize(loop.Hook):
  """After each block: per lane, the sum and the largest entry of the penalty's weights."""

  def __init__(self):
    self.rows = []

  def after_block(self, run):
    leaves = [w.reshape(w.shape[0], -1) for w in jax.tree.leaves(run.state.strategy.penalty.w)]  # [lanes, n] each
    total = sum(np.asarray(jnp.sum(w, axis=1), np.float64) for w in leaves)
    largest = np.max([np.asarray(jnp.max(w, axis=1)) for w in leaves], axis=0)
    self.rows.append({"block": run.block, "sum": total.tolist(), "max": largest.tolist()})
    print(f"after block {run.block}: sum " + " ".join(f"{v:.2e}" for v in total), flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="as `contlearn run --set`")
  parser.add_argument("--out", default="runs/ewc_fisher")
  args = parser.parse_args(argv)
  mod = three_scenarios()
  cfg = apply_overrides(dataclasses.replace(mod.get_config(), models=("ewc",), kinds=("task",)), args.set)
  name, cell = next(iter(mod.cells(cfg).items()))
  if not cell.strategy.endswith("ewc"):
    raise SystemExit(f"{name}: strategy {cell.strategy!r} has no Fisher; choose models=ewc or models=online_ewc")
  print(f"{name}: {cell.strategy} {', '.join(cell.hparams)}, seeds {', '.join(map(str, cell.seeds))}", flush=True)
  hook = FisherSize()
  res = run_cell(cell, args.out, progress=False, name=name, hooks=[hook])
  first = np.asarray(res.matrix)[:, :, 0] * 100  # [lanes, tasks]: task 0's accuracy after each task
  for s, row in zip(cell.seeds, first):
    print(f"seed {s}: task 0 after each task (%) " + " ".join(f"{v:.1f}" for v in row))
  out = pathlib.Path(args.out) / "fisher.json"
  out.write_text(json.dumps({"cell": name, "seeds": list(cell.seeds), "fisher": hook.rows, "task0": first.tolist()}))
  return hook.rows


if __name__ == "__main__":
  main()
