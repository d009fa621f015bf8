"""What a classic continual-learning cell produces: its `Result`, the metrics that
summarize it, its `summary.json`, and the markdown tables experiments print.

>>> import numpy as np
>>> r = np.array([[[0.9, 0.1], [0.7, 0.8]]])             # one lane: R after each of 2 tasks
>>> a = np.array([[[0.9, 0.1], [0.6, 0.5], [0.7, 0.8]]])  # its trajectory of 3 evaluations
>>> round(summarize(r, a, [1, 3])["acc"], 2)               # mean accuracy after the last task
0.75
>>> print(markdown_table(["Method", "ACC"], [["EWC", 0.75]]))
| Method | ACC |
|---|---|
| EWC | 75.0 |
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from contlearn import provenance, spread
from contlearn.cl import metrics
from contlearn.cl.run_config import RunConfig, config_json
from contlearn.run_log import write_atomic


@dataclasses.dataclass
class Result:
  """A finished cell.

  Attributes:
    config: its configuration.
    matrix: float32 [L, T, T], R of each lane (seed).
    trajectory: float32 [L, N, T], accuracy on every task at each evaluation.
    ends: int [T], per task the evaluations up to its end.
    summary: ACC, forgetting, BWT, avg-min-ACC, WC-ACC, final old-task
      accuracy and the stability gap: mean over lanes and `<name>_std`,
      their spread.
    extra: what the experiment computed from the final state (`run_cell`'s
      `extra`), JSON.
    timing: `seconds` of training, summed over the invocations of a resumed
      run (None when resumed from a checkpoint that lacks it); the last
      invocation's `first_block_s` (mostly compilation) and
      `examples_per_s` per lane after its first block.
  """

  config: RunConfig
  matrix: np.ndarray
  trajectory: np.ndarray
  ends: np.ndarray
  summary: dict[str, float]
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)
  timing: dict[str, float] = dataclasses.field(default_factory=dict)


def summarize(matrix: np.ndarray, trajectory: np.ndarray, ends: Sequence[int]) -> dict[str, float]:
  """Per-lane metrics, then their mean and spread (`_std`) over lanes."""
  per_lane = [
    {
      "acc": metrics.average_accuracy(r),
      "forgetting": metrics.forgetting(r),
      "bwt": metrics.backward_transfer(r),
      "min_acc": metrics.min_accuracy(a, ends),
      "wc_acc": metrics.worst_case_accuracy(a, ends),
      "old_acc": metrics.final_old_accuracy(a, ends),
      "stability_gap": metrics.stability_gap(a, ends),
    }
    for r, a in zip(matrix, trajectory)
  ]
  # the population std, as Avalanche and Mammoth report it (0 for one lane)
  stats = {k: spread.mean_std([p[k] for p in per_lane], ddof=0) for k in per_lane[0]}
  return {**{k: mean for k, (mean, _) in stats.items()}, **{k + "_std": std or 0.0 for k, (_, std) in stats.items()}}


def load_result(path: pathlib.Path) -> Result:
  """A cell's `Result` from its `summary.json`."""
  d = json.loads(pathlib.Path(path).read_text())
  cfg = RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["config"].items()})
  return Result(
    cfg,
    np.asarray(d["matrix"], np.float32),
    np.asarray(d["trajectory"], np.float32),
    np.asarray(d["ends"]),
    d["summary"],
    d.get("extra", {}),
    d.get("timing", {}),
  )


def write_result(path: pathlib.Path, name: str, res: Result) -> None:
  write_atomic(
    path,
    json.dumps(
      {
        "name": name,
        "summary": res.summary,
        "extra": res.extra,
        "timing": res.timing,
        "ends": res.ends.tolist(),
        "matrix": res.matrix.tolist(),
        "trajectory": res.trajectory.tolist(),
        "config": config_json(res.config),
        "code": provenance.code_version(),  # the code that finished the cell (run.json: every invocation's)
      },
      indent=1,
    ),
  )


def with_spread(res: Result, key: str) -> float | tuple[float, float]:
  """The mean of summary `key` over lanes, and its standard deviation when there are several lanes."""
  return (res.summary[key], res.summary[key + "_std"]) if len(res.matrix) > 1 else res.summary[key]


def markdown_table(header: list[str], rows: list[list[Any]], *, percent: bool = True) -> str:
  """A GitHub markdown table; floats print as percentages with one decimal (`percent`, for
  accuracies in [0, 1]) or as they are with three, (mean, std) pairs as "m ± s" the same way.

  >>> print(markdown_table(["Memory", "n=16", "loss"], [["DeltaNet", (0.7724, 0.0514), 0.321]], percent=False))
  | Memory | n=16 | loss |
  |---|---|---|
  | DeltaNet | 0.772 ± 0.051 | 0.321 |
  """
  scale, digits = (100, 1) if percent else (1, 3)

  def number(x: float) -> str:
    return f"{scale * x:.{digits}f}"

  def fmt(v: Any) -> str:
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, float) for x in v):
      return f"{number(v[0])} ± {number(v[1])}"
    return number(v) if isinstance(v, float) else str(v)

  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
  return "\n".join(lines)
