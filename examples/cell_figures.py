"""Per seed, what a finished continual-learning cell learnt and kept, and the weights its penalty ends with.

    python examples/cell_figures.py runs/cl_baselines/pmnist_si
    python examples/cell_figures.py runs/cl_baselines           # every finished cell under the folder

For each cell folder (one with a `summary.json`), read back with
`contlearn.cl.cells.final_state` (its data must be where the cell read it):

    ACC             per seed, the mean accuracy over all tasks after the last
                    one (the accuracy matrix's last row); then the mean, the
                    population and the sample standard deviation over seeds
    right after     the mean over tasks of each task's accuracy right after
                    its own training (the matrix's diagonal)
    lost by the end right after less the final accuracy, mean over tasks
                    (the last task loses 0 by definition)
    penalty weights for a strategy with a quadratic penalty (EWC's Fisher,
                    online EWC's, SI's Omega: `state.strategy.penalty.w`),
                    per weight matrix: median, mean and the fraction below
                    1e-3, all seeds together

Accuracies in %. Ends with one JSON line per cell, with every figure above.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

import jax
import numpy as np

from contlearn import spread
from contlearn.cl import metrics
from contlearn.cl.cells import final_state


def accuracy_figures(matrix: np.ndarray) -> dict[str, Any]:
  """ACC, right after and lost by the end of an accuracy matrix `[seeds, after task, on task]` (fractions), in %.

  >>> m = np.array([[[0.9, 0.1], [0.7, 0.8]], [[1.0, 0.0], [0.5, 0.9]]])  # 2 seeds, 2 tasks
  >>> f = accuracy_figures(m)
  >>> f["acc_per_seed"], round(f["acc"], 2), round(f["acc_std"], 2), round(f["acc_sample_std"], 2)
  ([75.0, 70.0], 72.5, 2.5, 3.54)
  >>> round(f["right_after"], 2), round(f["lost_by_the_end"], 2)   # diagonals .9 .8 and 1.0 .9; task 0 loses .2 and .5
  (90.0, 17.5)
  """
  per_seed = np.asarray([metrics.average_accuracy(r) for r in matrix]) * 100
  right_after = np.diagonal(np.asarray(matrix, np.float64), axis1=1, axis2=2).mean(axis=-1) * 100
  acc, std = spread.mean_std(per_seed, ddof=0)
  lost = right_after - per_seed  # over all tasks, the last losing 0: the diagonal's mean less the last row's
  return {
    "acc_per_seed": [round(float(v), 2) for v in per_seed],
    "acc": acc,
    "acc_std": std or 0.0,
    "acc_sample_std": spread.mean_std(per_seed)[1],
    "right_after": float(right_after.mean()),
    "lost_by_the_end": float(lost.mean()),
    "lost_per_seed": [round(float(v), 2) for v in lost],
  }


def penalty_figures(strategy_state: Any) -> dict[str, dict[str, float]]:
  """Per weight matrix of the penalty (`strategy_state.penalty.w`, leaves `[seeds, ...]`, matrices of 2 dims
  after the seeds): median, mean and the fraction of entries below 1e-3, the seeds together. {} without one.

  >>> from types import SimpleNamespace
  >>> w = {"layers": [{"w": np.array([[[0.0, 1.0], [2.0, 3.0]]]), "b": np.ones((1, 2))}]}
  >>> penalty_figures(SimpleNamespace(penalty=SimpleNamespace(w=w)))
  {"['layers'][0]['w']": {'median': 1.5, 'mean': 1.5, 'below_1e-3': 0.25}}
  """
  penalty = getattr(strategy_state, "penalty", None)
  if penalty is None or not hasattr(penalty, "w"):
    return {}
  figures = {}
  for path, w in jax.tree_util.tree_flatten_with_path(penalty.w)[0]:
    w = np.asarray(w, np.float64)
    if w.ndim == 3:
      figures[jax.tree_util.keystr(path)] = {
        "median": float(np.median(w)),
        "mean": float(w.mean()),
        "below_1e-3": float(np.mean(w < 1e-3)),
      }
  return figures


def report(cell: pathlib.Path) -> dict[str, Any]:
  """Prints a finished cell's figures; returns them."""
  result, state = final_state(cell)
  acc = accuracy_figures(result.matrix)
  weights = penalty_figures(jax.device_get(state.strategy))
  seeds = ", ".join(map(str, result.config.seeds))
  print(f"{cell}: {result.config.strategy}, seeds {seeds}")
  print(
    f"  ACC {acc['acc']:.1f} ± {acc['acc_std']:.1f} (sample std {acc['acc_sample_std'] or 0.0:.1f}); "
    f"per seed {' / '.join(f'{v:.1f}' for v in acc['acc_per_seed'])}"
  )
  print(f"  right after {acc['right_after']:.1f}; lost by the end {acc['lost_by_the_end']:.1f}")
  for name, f in weights.items():
    print(f"  penalty {name}: median {f['median']:.2g}, mean {f['mean']:.2g}, below 1e-3 {100 * f['below_1e-3']:.1f}%")
  return {"cell": str(cell), "strategy": result.config.strategy, "seeds": list(result.config.seeds), **acc,
          "penalty": weights}  # fmt: skip


def main(argv=None) -> list[dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("folder", type=pathlib.Path, help="a cell's folder, or a run folder holding cells")
  args = parser.parse_args(argv)
  cells = [args.folder] if (args.folder / "summary.json").exists() else sorted(
    p.parent for p in args.folder.rglob("summary.json")
  )  # fmt: skip
  if not cells:
    raise SystemExit(f"no finished cell (a folder with summary.json) in {args.folder}")
  rows = [report(cell) for cell in cells]
  for row in rows:
    print(json.dumps(row))
  return rows


if __name__ == "__main__":
  main()
